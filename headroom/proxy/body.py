"""Reading a request body: undo the client's content-encoding, check it is a JSON object."""

from __future__ import annotations

import zlib

import ujson
from sanic import Request

from headroom.proxy.errors import ProxyError


def decoded_body(request: Request) -> bytes:
    """The request body as plain bytes, undoing a ``content-encoding`` the client applied."""
    raw = request.body or b""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise ProxyError(415, f"Unsupported content-encoding {encoding!r}: send gzip, deflate or identity")
    limit = request.app.ctx.config.max_body_bytes
    try:
        decoder = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
        body = decoder.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise ProxyError(400, f"Request body is not valid {encoding} data: {exc}") from None
    if len(body) > limit:
        limit_mb = request.app.ctx.config.max_body_mb
        raise ProxyError(413, f"Request body too large once decompressed: the limit is {limit_mb:g} MiB")
    return body


def json_object(body: bytes) -> dict:
    try:
        parsed = ujson.loads(body)
    except (ValueError, TypeError) as exc:
        raise ProxyError(400, f"Request body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ProxyError(400, "Request body must be a JSON object")
    return parsed


def dumps(body: dict) -> bytes:
    """Serialise a body Headroom changed: compact, unicode kept as is, deterministic."""
    return ujson.dumps(body, ensure_ascii=False, escape_forward_slashes=False).encode()


def api_key_of(request: Request) -> str:
    """The caller's credential as sent (only ever hashed, never stored or logged)."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
