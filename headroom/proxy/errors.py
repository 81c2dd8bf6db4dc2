"""Errors Headroom itself produces, always in the native shape of the request's format."""

from __future__ import annotations

import logging
import re

from sanic import Request
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse

from headroom.formats import Format, format_for_path
from headroom.proxy.request_id import request_id_for
from headroom.proxy.security_headers import PRIVATE

log = logging.getLogger("headroom.proxy")

# Sanic answers a request whose head it could not parse (too large, malformed) through a
# stand-in request with method "NONE", no path and no headers; the bytes it did receive
# still say which format's client sent it.
_UNPARSED = "NONE"
_HEADER_NAME = re.compile(rb"\r\n([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*:")
_PEEK_BYTES = 16_384  # Sanic's ceiling on a request head


class ProxyError(Exception):
    """Raised inside a route to answer with a native error of ``status``."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def error_response(
    fmt: Format, status: int, message: str, code: str | None = None, request_id: str | None = None
) -> HTTPResponse:
    """An error Headroom produced itself (``x-headroom-error: 1`` tells it from a relayed one).

    No upstream call was made, so there was no upstream latency to add to: overhead 0.
    """
    headers = {**PRIVATE, "x-headroom-error": "1", "x-headroom-overhead-ms": "0.000"}
    if request_id:
        headers["x-request-id"] = request_id
    return HTTPResponse(fmt.error_body(status, message, code), status=status,
                        content_type="application/json", headers=headers)


def _received_head(request: Request) -> bytes:
    """What Sanic had received of a request it could not parse (empty if unknown)."""
    buffer = getattr(getattr(request, "stream", None), "recv_buffer", None)
    return bytes(buffer[:_PEEK_BYTES]) if buffer else b""


def _format_of(request: Request) -> Format:
    if request.method != _UNPARSED:
        return format_for_path(request.path, request.headers)
    head = _received_head(request)
    target = head.split(b"\r\n", 1)[0].split(b" ")
    path = target[1].split(b"?", 1)[0].decode("ascii", "replace") if len(target) > 1 else ""
    names = {name.decode().lower() for name in _HEADER_NAME.findall(head)}
    return format_for_path(path, names)


def _unparsed_head_error(request: Request, status: int, exc: Exception) -> tuple[int, str, str | None]:
    """A request head Sanic refused: too large (Sanic says 413; it is a 414 when the request
    line alone is over the limit, else 431), or malformed (400)."""
    if status == 400:
        return status, f"Malformed HTTP request head: {exc}", None
    limit = request.app.config.REQUEST_MAX_HEADER_SIZE
    if b"\r\n" not in _received_head(request)[:limit]:
        return 414, f"Request URL too long: the request line may take at most {limit} bytes", "uri_too_long"
    message = f"Request headers too large: the request line and headers may take at most {limit} bytes"
    return 431, message, "request_header_fields_too_large"


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
    fmt = _format_of(request)
    request_id = request_id_for(request)
    if isinstance(exc, ProxyError):
        return error_response(fmt, exc.status, exc.message, exc.code, request_id)
    if isinstance(exc, SanicException):
        status = exc.status_code or 500
        if request.method == _UNPARSED and status in (400, 413):
            status, message, code = _unparsed_head_error(request, status, exc)
            return error_response(fmt, status, message, code, request_id)
        response = error_response(fmt, status, _message_for(exc, request, status), None, request_id)
        response.headers.update(getattr(exc, "headers", None) or {})  # a 405's Allow, for one
        return response
    log.exception("unexpected error while proxying %s %s", request.method, request.path)
    return error_response(fmt, 500, "Headroom proxy internal error", None, request_id)
