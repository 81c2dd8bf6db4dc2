"""Reading a request: check its head, undo the client's content-encoding, parse a JSON object.

Headroom reads a request body once and bases its guards (model, ``max_tokens``, budget),
its cache key and its compression on what it read. The parse is therefore strict: anything
another JSON parser upstream might read differently, or that Headroom's own arithmetic
cannot hold, is refused with a native 400 before it goes anywhere (:func:`json_object`).
"""

from __future__ import annotations

import json
import math
import re
import zlib
from itertools import chain, compress

import ujson
from sanic import Request

from headroom.proxy.errors import ProxyError
from headroom.proxy.resources import resources_of

#: Deepest nesting of arrays and objects accepted in a JSON body (the body object itself
#: is level 1). serde_json's default, a common upstream parser's limit; real requests nest
#: a dozen levels (tool schemas), and Python code walking a body stays far from its
#: recursion limit. (Far deeper text, 100,000 ``[``, stops at the parser's own recursion
#: limit first: refused the same way.)
MAX_JSON_DEPTH = 128

#: Largest integer magnitude accepted in a JSON body: signed 64 bits. Beyond it, parsers
#: upstream disagree (Go and Rust refuse it, JavaScript rounds it), and Headroom's cost
#: arithmetic (``max_tokens`` × price) would overflow a float.
MAX_JSON_INT = 2**63 - 1

#: Most header fields accepted on one request (Apache httpd's ``LimitRequestFields``).
#: Sanic bounds the request line and headers together at ``REQUEST_MAX_HEADER_SIZE``
#: (8 KiB) but not their number: 8 KiB holds some 2,000 tiny headers.
MAX_HEADER_COUNT = 100


# --- the request head -------------------------------------------------------------------

# Control characters (HTAB aside) other than the CRLF that ends each line. Sanic splits the
# head on CRLF only, so a bare CR or LF would sit inside a value and break (or smuggle) a
# header when it is forwarded; the upstream client refuses to send one at all (http1._head).
_CONTROLS = bytes(range(0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"
# A header line that does not start with a field name (RFC 9110 token) and a colon:
# whitespace before the colon, folded continuation lines, names with spaces or separators.
_BAD_FIELD_LINE = re.compile(rb"\r\n(?![!#$%&'*+.^_`|~0-9A-Za-z-]+:)")


def head_problem(head: bytes, header_count: int) -> ProxyError | None:
    """Why a request head must be refused, or ``None``: a malformed header section (RFC 9112
    §5.1, §5.2: whitespace before a colon, an obs-folded line, a name that is not a token,
    a control character or a bare CR or LF), too many fields, or a value in bytes that are
    not UTF-8 (it could not be forwarded exactly as received).

    ``head`` is the request line and header lines as received, without the final empty line.
    Sanic itself refuses a head over ``REQUEST_MAX_HEADER_SIZE`` (answered as a native 414/431
    by :func:`headroom.proxy.errors.handle_exception`), a line without a colon and a URL that
    is not ASCII. A pure function: :class:`headroom.proxy.framing.StrictHttp` calls it on every
    head before routing, :func:`check_head` in the request path.
    """
    if head:
        if len(head) - len(head.translate(None, _CONTROLS)) != 2 * head.count(b"\r\n"):  # C speed: ~2 µs
            return ProxyError(400, "Request headers contain a control character or a bare CR or LF")
        if _BAD_FIELD_LINE.search(head):
            return ProxyError(400, "Malformed header line: expected 'name: value' with a token name "
                                   "(no whitespace before the colon, no folded lines)")
        if not head.isascii():
            try:
                head.decode("utf-8")
            except UnicodeDecodeError:  # no API takes one; client libraries re-encode or drop it
                return ProxyError(400, "Request header values must be ASCII or UTF-8")
    if header_count > MAX_HEADER_COUNT:
        return ProxyError(431, f"Too many header fields: the limit is {MAX_HEADER_COUNT}",
                          "request_header_fields_too_large")
    return None


def check_head(request: Request) -> None:
    """Refuse a request whose head :func:`head_problem` finds fault with, and end its
    connection (``keep_alive`` of Sanic's HTTP/1.1 stream): what follows a malformed head is
    not parsed as another request.

    Under Sanic's own server :class:`headroom.proxy.framing.StrictHttp` has already checked
    the head before routing (its ``checks_heads``), so a head is read once per request: this
    check runs only where that parser did not, i.e. under an ASGI server (where
    ``request.head`` is empty: the server parsed, and validated, the head itself, and only
    the field count is left to check) or another HTTP class.
    """
    if getattr(request.stream, "checks_heads", False):
        return
    problem = head_problem(request.head or b"", len(request.headers))
    if problem is not None:
        if request.stream is not None and hasattr(request.stream, "keep_alive"):
            request.stream.keep_alive = False
        raise problem


# --- the body -----------------------------------------------------------------------------


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
    """:func:`decoded_body` of a Sanic request, under the configured limit, once its head
    has passed :func:`check_head`."""
    check_head(request)
    return decoded_body(request.body or b"", request.headers.get("content-encoding", ""),
                        resources_of(request).config.max_body_bytes)


class _Refused(ValueError):
    """A well-formed JSON text that Headroom will not accept (see :func:`json_object`)."""


def _object(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {key!r} in one object")
            seen.add(key)
    return obj


def _integer(text: str) -> int:
    # 20 characters hold any signed 64-bit value; a longer literal is out of range (JSON
    # forbids leading zeros), and is never handed to int(), whose cost grows with length.
    value = int(text) if len(text) <= 20 else MAX_JSON_INT + 1
    if not -MAX_JSON_INT - 1 <= value <= MAX_JSON_INT:
        raise _Refused(f"integer {text[:24]}{'…' if len(text) > 24 else ''} is out of range "
                       f"(more than 64 bits)")
    return value


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Refused(f"number {text[:24]}{'…' if len(text) > 24 else ''} is out of range")
    return value


def _constant(name: str):
    raise _Refused(f"{name} is not a JSON value")


_decoder = json.JSONDecoder(object_pairs_hook=_object, parse_int=_integer, parse_float=_float,
                            parse_constant=_constant)


def nesting_exceeds(value, limit: int) -> bool:
    """Whether a parsed JSON value nests arrays and objects deeper than ``limit`` levels.

    Level by level, with the per-value work in C (``chain``, ``map``, ``compress``): about
    0.5 ms for a 500 KB agent request. (The parser itself refuses far deeper text, by
    recursion limit, before this runs.)
    """
    level = [value]
    for _ in range(limit):
        values = list(chain.from_iterable([c.values() if type(c) is dict else c for c in level]))
        level = list(compress(values, map(_IS_CONTAINER, map(type, values))))
        if not level:
            return False
    return True


_IS_CONTAINER = frozenset((dict, list)).__contains__
_SMALL_BODY = 16_384  # bytes: counting brackets is cheaper than walking the parsed value


def json_object(body: bytes) -> dict:
    """Parse a request body that must be one JSON object, strictly.

    Refused with a native 400: bytes that are not UTF-8; text that is not JSON (including
    raw control characters inside strings, ``NaN`` and ``Infinity``); a value other than
    an object; nesting deeper than :data:`MAX_JSON_DEPTH`; numbers out of range (``1e999``,
    integers beyond :data:`MAX_JSON_INT`).

    **Duplicate keys are refused too.** RFC 8259 leaves their meaning open: one parser
    keeps the first value, another the last. Headroom's guards, cache key and compression
    read one value; the upstream could act on the other (a small ``max_tokens`` checked
    against the budget, a huge one used). Refusing is the only reading everyone agrees on.

    Lone surrogates written as escapes (``"\\ud800"``) are legal JSON and are accepted.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProxyError(400, f"Request body is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        parsed = _decoder.decode(text)
    except _Refused as exc:
        raise ProxyError(400, f"Request body refused: {exc}") from None
    except RecursionError:
        raise ProxyError(400, _TOO_DEEP) from None
    except ValueError as exc:
        raise ProxyError(400, f"Request body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ProxyError(400, "Request body must be a JSON object")
    few_brackets = len(body) <= _SMALL_BODY and body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH
    if not few_brackets and nesting_exceeds(parsed, MAX_JSON_DEPTH):
        raise ProxyError(400, _TOO_DEEP)
    return parsed


_TOO_DEEP = f"Request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(body: dict) -> bytes:
    """Serialise a body Headroom changed: compact, unicode kept as is, deterministic.

    A lone surrogate (legal in JSON as an escape, e.g. ``"\\ud800"``) has no UTF-8 form:
    it is written back as the same escape.
    """
    text = ujson.dumps(body, ensure_ascii=False, escape_forward_slashes=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode()
