"""Reading a request body: undo the client's content-encoding, check it is a JSON object."""

from __future__ import annotations

import zlib

import ujson
from sanic import Request

from headroom.proxy.context import context_of
from headroom.proxy.errors import ProxyError


def decoded_body(raw: bytes, content_encoding: str, max_bytes: int) -> bytes:
    """The request body as plain bytes, undoing a ``content-encoding`` the client applied;
    never more than ``max_bytes`` once decompressed (a zip bomb stops at the limit)."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise ProxyError(415, f"Unsupported content-encoding {encoding!r}: send gzip, deflate or identity")
    try:
        decoder = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
        body = decoder.decompress(raw, max_bytes + 1)
    except zlib.error as exc:
        raise ProxyError(400, f"Request body is not valid {encoding} data: {exc}") from None
    if len(body) > max_bytes:
        limit_mb = round(max_bytes / 2**20, 3)
        raise ProxyError(413, f"Request body too large once decompressed: the limit is {limit_mb:g} MiB")
    return body


def request_body(request: Request) -> bytes:
    """:func:`decoded_body` of a Sanic request, under the configured limit."""
    return decoded_body(request.body or b"", request.headers.get("content-encoding", ""),
                        context_of(request).config.max_body_bytes)


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
