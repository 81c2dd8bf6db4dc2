"""An OpenAPI description of Headroom's own endpoints, built by sanic-ext, served as a file.

sanic-ext builds the description from the routes (their docstrings and parameters) when
``python -m headroom.proxy.openapi_build`` runs, into ``headroom/data/openapi.json``; a test keeps
that file equal to what sanic-ext builds from the current routes. A worker serves the file
(``/docs/openapi.json``, behind the admin token) and never imports sanic-ext: that import
(pydantic, jinja2, yaml and sanic-ext's own modules) cost every worker about 0.16 s of
start-up and 9 MB of memory, for one admin endpoint (measured: median launch to first 200 on
``/health`` 0.82 → 0.66 s, idle worker RSS 110 → 101 MB, five launches each).

Only the JSON is served: no Swagger or Redoc pages. The provider API routes are left out,
the providers document those.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from headroom.proxy.admin import require_admin
from headroom.proxy.security_headers import PRIVATE

SPEC_FILE = "openapi.json"  # in headroom/data

bp = Blueprint("openapi_file", url_prefix="/docs")  # "openapi" is sanic-ext's own


@lru_cache(maxsize=1)
def spec_bytes() -> bytes:
    return resources.files("headroom.data").joinpath(SPEC_FILE).read_bytes()


@bp.get("/openapi.json")
async def openapi_json(request: Request) -> HTTPResponse:
    """This description (admin token required)."""
    require_admin(request)
    return HTTPResponse(spec_bytes(), content_type="application/json", headers=PRIVATE)

