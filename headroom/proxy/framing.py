"""Strict HTTP/1.1 framing for Sanic's own server: a request whose head or chunked body a
front proxy could read differently is refused, and the connection is closed.

Request smuggling needs two parsers that disagree about where a request ends. Sanic's parser
is lenient where others are not: it keeps ``transfer-encoding : chunked`` (space before the
colon), a tab before the colon and an obs-folded line as headers with odd names, so it
frames by ``content-length`` where a front proxy that reads them frames by chunks; it reads
the chunk sizes ``0x4b``, `` 4b`` and ``4b `` (Python's ``int``) and the content-length
``٤`` (a non-ASCII digit); and it skips the two bytes after a chunk's data without checking
that they are CRLF. Answering such a request while keeping the connection open would parse
the attacker's bytes after it as a new request. So here:

- the head is checked (:func:`headroom.proxy.body.head_problem`: RFC 9112 §5.1 and §5.2, no
  whitespace before a colon, no obs-fold, no control characters, at most
  :data:`~headroom.proxy.body.MAX_HEADER_COUNT` fields) as soon as Sanic has parsed it,
  before routing, middleware or any body byte is read, on every request of a connection,
  pipelined ones included (they are parsed from the buffer, never seen by
  ``data_received``);
- a refusal is the route's native 400/431 with ``connection: close``, the body is not read,
  and the connection ends after it: nothing after the bad head is parsed;
- a content-length is ASCII digits only (trailing whitespace aside), a chunk-size line is
  CRLF, 1*HEXDIG, then nothing or ``;`` and an extension of visible ASCII, spaces and tabs
  (RFC 9112 §7.1; "bad whitespace" before the ``;`` is refused: senders must not write it).
  Anything else is Sanic's own 400, which closes the connection.

Sanic internals relied on (checked against Sanic 25.12, ``sanic/http/http1.py``;
the tests in ``tests/hardening/test_smuggling.py`` fail if any of this changes):
``HttpProtocol.HTTP_CLASS`` picks the per-connection parser class; ``Http.http1_request_header``
parses one head into ``self.request`` and leaves the body in ``recv_buffer``; an exception it
raises is answered by ``error_response`` through the app's error handler, and the connection
is kept only if ``keep_alive`` is true and the body (``request_body``) is drained; chunk sizes
and content-lengths go through ``Http._safe_int`` (``base`` 16 and 10), called while the
chunk-size line is still at the start of ``recv_buffer``. Overriding these two methods, rather
than copying Sanic's parser, keeps Sanic's touch-ups (``__touchup__``) and its own checks.
"""

from __future__ import annotations

import re

from sanic.http import Http

from headroom.proxy.body import head_problem

_CONTENT_LENGTH = re.compile(r"[0-9]+[ \t]*")  # a str pattern: [0-9] is ASCII only; the value arrives left-stripped
_CHUNK_SIZE_LINE = re.compile(rb"\r\n[0-9A-Fa-f]+(?:;[\t\x20-\x7e]*)?")


class StrictHttp(Http):
    """Sanic's HTTP/1.1 parser, refusing (and closing on) what a front proxy could frame differently."""

    __slots__ = ()
    #: Every head is checked here, before routing: the request path need not check it again
    #: (:func:`headroom.proxy.body.check_head`).
    checks_heads = True

    async def http1_request_header(self) -> None:
        await super().http1_request_header()
        request = self.request
        problem = head_problem(request.head, len(request.headers))
        if problem is not None:
            self.request_body = None  # never read (nor drained): the bytes after this head are not parsed
            self.keep_alive = False
            raise problem

    def _safe_int(self, value: str, base: int = 10) -> int:  # type: ignore[override]  # Sanic's is a staticmethod, always called on self; ours reads the buffer
        if base == 16:
            buf = self.recv_buffer
            if not _CHUNK_SIZE_LINE.fullmatch(buf, 0, buf.find(b"\r\n", 3)):
                raise ValueError("bad chunk-size line")
            return int(value, 16)
        if base != 10 or not _CONTENT_LENGTH.fullmatch(value):
            raise ValueError("bad content-length")
        return int(value)
