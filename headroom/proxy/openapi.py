"""An OpenAPI description of Headroom's own endpoints, served by sanic-ext under admin protection.

Only the OpenAPI JSON (``/docs/openapi.json``) is served: no Swagger/Redoc pages, and none
of sanic-ext's other extensions, which would add work to every proxied request. The
provider API routes are left out — the providers document those.
"""

from __future__ import annotations

from sanic import Request, Sanic
from sanic_ext import Extend
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.blueprint import blueprint_factory
from sanic_ext.extensions.openapi.builders import SpecificationBuilder
from sanic_ext.extensions.openapi.extension import OpenAPIExtension

from headroom import __version__
from headroom.proxy.admin import require_admin
from headroom.proxy.security_headers import PRIVATE


async def _admin_only(request: Request) -> None:
    require_admin(request)


async def _private(request: Request, response) -> None:
    response.headers.update(PRIVATE)


class ProtectedOpenAPI(OpenAPIExtension):
    """sanic-ext's OpenAPI extension with the admin check on its blueprint, and no UI pages."""

    name = "headroomopenapi"  # sanic-ext keys extensions by name; "openapi" is the stock one

    def startup(self, bootstrap: Extend) -> None:
        self.bp = blueprint_factory(self.app.config)
        self.bp.middleware(_admin_only, "request")
        self.bp.middleware(_private, "response")
        self.app.blueprint(self.bp)
        bootstrap._openapi = SpecificationBuilder()

    def label(self) -> str:
        return ""


def add_openapi(app: Sanic, *undocumented) -> None:
    """Describe every route except those of the ``undocumented`` blueprints."""
    for blueprint in undocumented:
        openapi.exclude(bp=blueprint)
    Extend(
        app,
        extensions=[ProtectedOpenAPI],
        built_in_extensions=False,
        config={
            "oas": True,
            "oas_ui_default": None,
            "oas_ui_redoc": False,
            "oas_ui_swagger": False,
            "oas_ignore_head": True,
            "oas_ignore_options": True,
            "oas_autodoc": True,
        },
    )
    app.ext.openapi.describe("Headroom", version=__version__,
                             description="Headroom's own endpoints. The provider APIs pass through unchanged.")
