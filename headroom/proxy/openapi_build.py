"""Builds ``headroom/data/openapi.json`` (served by :mod:`headroom.proxy.openapi`) with sanic-ext.

Apart from what is served: this module imports the app factory and sanic-ext, neither of which a
worker needs to answer ``/docs/openapi.json``. ``python -m headroom.proxy.openapi_build`` rewrites
the file; with ``--check`` it only says whether the file is out of date (a test runs that).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sanic import Blueprint, Sanic

from headroom import __version__
from headroom.config import build_config
from headroom.proxy import routes
from headroom.proxy.factory import create_app
from headroom.proxy.openapi import SPEC_FILE

DESCRIPTION = "Headroom's own endpoints. The provider APIs pass through unchanged."


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
    # sanic-ext's private blueprint attribute: the listener is not reachable any other way.
    listeners = extension.bp._future_listeners  # type: ignore[attr-defined]
    build_spec = next(f.listener for f in listeners if f.listener.__name__ == "build_spec")
    app.router.finalize()
    build_spec(app)
    return json.loads(json.dumps(SpecificationBuilder().build(app).serialize()))  # plain JSON types


def render(spec: dict) -> bytes:
    return (json.dumps(spec, indent=1, sort_keys=True) + "\n").encode()


def built_from_routes() -> dict:
    """What the file should hold: the description of a freshly built app's routes."""
    return build(create_app(build_config({}, {})), routes.bp)


def main(argv: list[str]) -> int:
    """Rewrite ``headroom/data/openapi.json`` from the routes; with ``--check``, only say
    (exit 1) whether it is out of date."""
    path = Path(__file__).resolve().parent.parent / "data" / SPEC_FILE
    fresh = render(built_from_routes())
    if "--check" in argv:
        if path.read_bytes() != fresh:
            print(f"{path} is out of date: run python -m headroom.proxy.openapi_build", file=sys.stderr)
            return 1
        return 0
    path.write_bytes(fresh)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
