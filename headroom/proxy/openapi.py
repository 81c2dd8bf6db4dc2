"""An OpenAPI description of Headroom's own endpoints, built by sanic-ext, served as a file.

sanic-ext builds the description from the routes (their docstrings and parameters) when
``python -m headroom.proxy.openapi`` runs, into ``headroom/data/openapi.json``; a test keeps
that file equal to what sanic-ext builds from the current routes. A worker serves the file
(``/docs/openapi.json``, behind the admin token) and never imports sanic-ext: that import
(pydantic, jinja2, yaml and sanic-ext's own modules) cost every worker about 0.16 s of
start-up and 9 MB of memory, for one admin endpoint (measured: median launch to first 200 on
``/health`` 0.82 → 0.66 s, idle worker RSS 110 → 101 MB, five launches each).

Only the JSON is served: no Swagger or Redoc pages. The provider API routes are left out,
the providers document those.
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from importlib import resources
from pathlib import Path

from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse

from headroom import __version__
from headroom.proxy.admin import require_admin
from headroom.proxy.security_headers import PRIVATE

SPEC_FILE = "openapi.json"  # in headroom/data
DESCRIPTION = "Headroom's own endpoints. The provider APIs pass through unchanged."

bp = Blueprint("openapi_file", url_prefix="/docs")  # "openapi" is sanic-ext's own


@lru_cache(maxsize=1)
def spec_bytes() -> bytes:
    return resources.files("headroom.data").joinpath(SPEC_FILE).read_bytes()


@bp.get("/openapi.json")
async def openapi_json(request: Request) -> HTTPResponse:
    """This description (admin token required)."""
    require_admin(request)
    return HTTPResponse(spec_bytes(), content_type="application/json", headers=PRIVATE)


def build(app: Sanic, *undocumented: Blueprint) -> dict:
    """The description sanic-ext builds for ``app``'s routes, except the ``undocumented``
    blueprints'. Imports sanic-ext: for the build and its test only."""
    from sanic_ext import Extend
    from sanic_ext.extensions.openapi import openapi
    from sanic_ext.extensions.openapi.builders import SpecificationBuilder
    from sanic_ext.extensions.openapi.extension import OpenAPIExtension

    for blueprint in undocumented:
        openapi.exclude(bp=blueprint)
    Extend(app, extensions=[OpenAPIExtension], built_in_extensions=False, config={
        "oas": True, "oas_url_prefix": "/_oas",  # its own routes, out of the way of the real ones
        "oas_ui_default": None, "oas_ui_redoc": False, "oas_ui_swagger": False,
        "oas_ignore_head": True, "oas_ignore_options": True, "oas_autodoc": True,
    })
    app.ext.openapi.describe("Headroom", version=__version__, description=DESCRIPTION)
    # sanic-ext builds the description in a before-server-start listener of its blueprint;
    # run that listener on the finished routes, without a server.
    (extension,) = app.ext.extensions
    build_spec = next(f.listener for f in extension.bp._future_listeners if f.listener.__name__ == "build_spec")
    app.router.finalize()
    build_spec(app)
    return json.loads(json.dumps(SpecificationBuilder().build(app).serialize()))  # plain JSON types


def render(spec: dict) -> bytes:
    return (json.dumps(spec, indent=1, sort_keys=True) + "\n").encode()


def built_from_routes() -> dict:
    """What the file should hold: the description of a freshly built app's routes."""
    from headroom.config import build_config
    from headroom.proxy import routes
    from headroom.proxy.server import create_app

    return build(create_app(build_config({}, {})), routes.bp)


def main(argv: list[str]) -> int:
    """Rewrite ``headroom/data/openapi.json`` from the routes; with ``--check``, only say
    (exit 1) whether it is out of date."""
    path = Path(__file__).resolve().parent.parent / "data" / SPEC_FILE
    fresh = render(built_from_routes())
    if "--check" in argv:
        if path.read_bytes() != fresh:
            print(f"{path} is out of date: run python -m headroom.proxy.openapi", file=sys.stderr)
            return 1
        return 0
    path.write_bytes(fresh)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
