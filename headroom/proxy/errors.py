"""Errors Headroom itself produces, always in the calling provider's native shape."""

from __future__ import annotations

import logging

from sanic import Request
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse

from headroom.proxy.providers import Provider, provider_for_path
from headroom.proxy.request_id import request_id_for

log = logging.getLogger("headroom.proxy")


class ProxyError(Exception):
    """Raised inside a route to answer with a native error of ``status``."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def error_response(
    provider: Provider, status: int, message: str, code: str | None = None, request_id: str | None = None
) -> HTTPResponse:
    """An error Headroom produced itself (``x-headroom-error: 1`` tells it from a relayed one).

    No upstream call was made, so there was no upstream latency to add to: overhead 0.
    """
    headers = {"x-headroom-error": "1", "x-headroom-overhead-ms": "0.000"}
    if request_id:
        headers["x-request-id"] = request_id
    return HTTPResponse(provider.error_body(status, message, code), status=status,
                        content_type="application/json", headers=headers)


def _message_for(exc: Exception, request: Request, status: int) -> str:
    if status == 404:
        return f"Not found: {request.method} {request.path}"
    if status == 405:
        return f"Method {request.method} not allowed on {request.path}"
    if status == 413:
        limit_mb = request.app.config.REQUEST_MAX_SIZE / 2**20  # set from --max-body-mb
        return f"Request body too large: the limit is {round(limit_mb, 3):g} MiB (--max-body-mb)"
    return str(exc) or "Bad request"


async def handle_exception(request: Request, exc: Exception) -> HTTPResponse:
    """Sanic's error handler: every error, even a routing one, comes back in native shape."""
    provider = provider_for_path(request.path, request.headers)
    request_id = request_id_for(request)
    if isinstance(exc, ProxyError):
        return error_response(provider, exc.status, exc.message, exc.code, request_id)
    if isinstance(exc, SanicException):
        status = exc.status_code or 500
        return error_response(provider, status, _message_for(exc, request, status), None, request_id)
    log.exception("unexpected error while proxying %s %s", request.method, request.path)
    return error_response(provider, 500, "Headroom proxy internal error", None, request_id)
