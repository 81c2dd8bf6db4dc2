"""A lean HTTP/1.1 client for the upstream hop: keep-alive connections as asyncio protocols
whose answers httptools parses (llhttp, Node.js's parser, the one Sanic's uvloop stack and
uvicorn use).

Why not aiohttp's client (Headroom's until issue 23): every request through
``ClientSession.request`` builds a yarl URL, a ``ClientRequest`` with its payload object,
timer and trace contexts, a cookie filter and a ``ClientResponse`` in Python; on a 2-core
machine that was about 30 % of an every-feature worker's samples under load. This client
does only what the proxy needs: it writes the request head as one string, parses the answer
in C, and hands the body out in the pieces the socket delivers. Measured, one run each
(docs/benchmarks.md, "Headroom's own upstream client"): alone, 44 µs of CPU per request
against aiohttp's 93 (``load_tests/bench_client.py``); in the proxy, every feature on, 315
against 440 µs, and 86 % of the bare hop's throughput against 64 % (``load_tests/bench.py``).

What it keeps from a full client, because an upstream may do any of it:

- bodies by ``Content-Length``, chunked, or delimited by the connection's close; no body
  for ``HEAD``, 204 and 304; interim 1xx answers skipped;
- gzip and deflate (zlib or raw) decoded in bounded steps as the body is read, so a
  compression bomb never expands in one go (the only encodings Headroom asks for; br too,
  with ``brotli`` >= 1.2; any other is handed out as it came, named in ``Response.encoding``);
- back-pressure: the socket stops being read while 256 KiB wait unread;
- a connect timeout, and a read timeout that applies while an answer is awaited and no
  byte arrives (never while the reader is the slow one);
- keep-alive reuse (last used first, idle ones dropped after ``keepalive`` seconds); a
  connection is reused only after its answer was read to the end; an idempotent request
  that finds a reused connection closed before any answer is sent again once (RFC 9112
  9.3.1, as aiohttp does);
- TLS with the system's default context (verified, SNI), made on first use; Happy Eyeballs
  between IPv6 and IPv4 addresses (``aiohappyeyeballs``, aiohttp's own);
- header values sent as Sanic decoded them (UTF-8 with surrogate escapes), byte for byte;
  a value with CR, LF or NUL is refused, never sent.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import zlib
from collections import deque
from typing import NamedTuple

import aiohappyeyeballs
import httptools
from multidict import CIMultiDict, CIMultiDictProxy

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
HIGH_WATER = 1 << 18  # unread bytes that pause the socket
LOW_WATER = 1 << 16  # ... and resume it
PIECE = 1 << 16  # the most one decompression step yields
_WITH_LENGTH = frozenset({"POST", "PUT", "PATCH"})  # a body-less one still says Content-Length: 0


class ConnectionBroken(Exception):
    """The upstream connection failed, or broke off before its answer was complete."""


class Unreachable(ConnectionBroken):
    """No connection could be made (refused, no route, unknown host, TLS handshake)."""


class ConnectTimeout(TimeoutError):
    """No connection within the connect timeout."""


class ReadTimeout(TimeoutError):
    """No byte of an awaited answer within the read timeout."""


class Origin(NamedTuple):
    """Where a connection goes: connections are pooled per origin."""

    scheme: str
    host: str
    port: int
    authority: str  # the Host header


def split_url(url: str) -> tuple[Origin, str]:
    """``url``'s origin and its request target (path and query, sent as they are)."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise ValueError("not an http(s) URL")  # never the URL itself: it may hold a secret
    end = len(rest)
    for mark in "/?#":
        at = rest.find(mark)
        if at != -1 and at < end:
            end = at
    authority, target = rest[:end], rest[end:].partition("#")[0]
    if not target.startswith("/"):
        target = "/" + target
    return _origin(scheme, authority), target


_origins: dict[tuple[str, str], Origin] = {}


def _origin(scheme: str, authority: str) -> Origin:
    """The parsed origin (a few upstream bases each: kept once parsed)."""
    key = (scheme, authority)
    found = _origins.get(key)
    if found is not None:
        return found
    if "@" in authority:
        raise ValueError("credentials in an upstream URL are not supported")
    default = 443 if scheme == "https" else 80
    if authority.startswith("["):  # [IPv6]:port
        host, _, rest = authority[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default
    else:
        host, colon, port_text = authority.rpartition(":")
        if not colon:
            host, port_text = authority, ""
        port = int(port_text) if port_text else default
    if not host or not 0 < port < 65536:
        raise ValueError("not an http(s) URL's host and port")
    found = Origin(scheme, host, port, authority)
    if len(_origins) < 256:
        _origins[key] = found
    return found


class _Zlib:
    """gzip or deflate, decoded at most :data:`PIECE` bytes at a time."""

    __slots__ = ("_deflate", "_started", "_tail", "_z", "busy")

    def __init__(self, encoding: str) -> None:
        self._deflate = encoding == "deflate"
        self._z = zlib.decompressobj(zlib.MAX_WBITS | 16 if not self._deflate else zlib.MAX_WBITS)
        self._started = False
        self._tail = b""
        self.busy = False  # output of what was fed is still to come

    def feed(self, data: bytes) -> bytes:
        if not self._started and data:
            self._started = True
            if self._deflate and data[0] & 0x0F != 8:  # raw deflate, without the zlib header
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            out = self._z.decompress(self._tail + data if self._tail else data, PIECE)
        except zlib.error:
            raise ConnectionBroken("the upstream sent a body that does not decompress") from None
        self._tail = self._z.unconsumed_tail
        self.busy = bool(self._tail) or len(out) == PIECE
        return out

    def drain(self) -> bytes:
        return self.feed(b"")

    def end(self) -> bytes:
        if self._started and not self._z.eof:
            raise ConnectionBroken("the upstream's compressed body was cut short")
        return self._z.flush()


class _Brotli:
    """br, decoded about :data:`PIECE` bytes at a time (Headroom never asks for it, but an
    upstream may send it anyway; decoded when ``brotli`` >= 1.2 is installed, as aiohttp did)."""

    __slots__ = ("_d", "_started", "busy")

    def __init__(self, encoding: str) -> None:
        self._d = brotli.Decompressor()
        self._started = False
        self.busy = False

    def feed(self, data: bytes) -> bytes:
        self._started = self._started or bool(data)
        try:
            out: bytes = self._d.process(data, output_buffer_limit=PIECE)
        except brotli.error:
            raise ConnectionBroken("the upstream sent a body that does not decompress") from None
        # The limit is approximate (a step may yield half as much again), and output can be
        # pending while more input would be accepted: a full step means more may follow.
        self.busy = len(out) >= PIECE or not self._d.can_accept_more_data()
        return out

    def drain(self) -> bytes:
        return self.feed(b"")

    def end(self) -> bytes:
        if self._started and not self._d.is_finished():
            raise ConnectionBroken("the upstream's compressed body was cut short")
        return b""


try:
    import brotli  # type: ignore[import-untyped]

    _BOUNDED_BROTLI = hasattr(brotli.Decompressor(), "can_accept_more_data")  # 1.2's output limit
except ImportError:  # pragma: no cover - brotli is optional
    _BOUNDED_BROTLI = False

_Decoder = _Zlib | _Brotli
DECODERS: dict[str, type[_Zlib] | type[_Brotli]] = {"gzip": _Zlib, "x-gzip": _Zlib, "deflate": _Zlib}
if _BOUNDED_BROTLI:
    DECODERS["br"] = _Brotli


class Body:
    """An answer's body as it arrives: :meth:`readany` gives the next piece, b"" at the end."""

    __slots__ = ("_buffered", "_conn", "_decoder", "_done", "_error", "_pieces", "_waiter")

    def __init__(self, conn: _Connection, decoder: _Decoder | None) -> None:
        self._conn = conn
        self._pieces: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder = decoder

    @property
    def waiting(self) -> bool:
        return self._waiter is not None

    def _feed(self, data: bytes) -> None:
        self._pieces.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        self._done = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if not self._done:
            self._error = exc
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _next_raw(self) -> bytes | None:
        if self._pieces:
            data = self._pieces.popleft()
            self._buffered -= len(data)
            if self._buffered < LOW_WATER:
                self._conn.resume()
            return data
        return None

    async def readany(self) -> bytes:
        decoder = self._decoder
        while True:
            if decoder is not None and decoder.busy:
                out = decoder.drain()
                if out:
                    return out
                continue
            data = self._next_raw()
            if data is not None:
                if decoder is None:
                    return data
                out = decoder.feed(data)
                if out:
                    return out
                continue
            if self._error is not None:
                raise self._error
            if self._done:
                if decoder is not None:
                    self._decoder = None
                    last = decoder.end()
                    if last:
                        return last
                return b""
            self._waiter = self._conn.loop.create_future()
            self._conn.awaiting()
            await self._waiter

    def iter_any(self) -> _Pieces:
        return _Pieces(self)


class _Pieces:
    """``async for piece in body.iter_any()``, without an async generator's cost."""

    __slots__ = ("_body",)

    def __init__(self, body: Body) -> None:
        self._body = body

    def __aiter__(self) -> _Pieces:
        return self

    async def __anext__(self) -> bytes:
        piece = await self._body.readany()
        if not piece:
            raise StopAsyncIteration
        return piece


class Response:
    """An answer whose head has arrived. ``release()`` (or ``close()``) it when done."""

    __slots__ = ("_conn", "content", "content_length", "content_type", "encoding", "headers", "reason", "status")

    def __init__(self, conn: _Connection, status: int, reason: str, headers: CIMultiDictProxy[str],
                 content: Body, encoding: str | None) -> None:
        self._conn: _Connection | None = conn
        self.encoding = encoding  # one the body still has (not decoded here), else None
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content = content
        mime = headers.get("content-type")
        self.content_type = mime.partition(";")[0].strip().lower() if mime else "application/octet-stream"
        length = headers.get("content-length")
        self.content_length = int(length) if length is not None and length.isdigit() else None

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool if it was read to the end.
        The answer lets go of it: a later ``close()`` can never reach a request it now serves."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finished()

    def close(self) -> None:
        """Drop the connection (the answer is not read to the end, or must not be reused)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, pool: Pool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.received = False  # any byte of the current answer
        self.idle_since = 0.0
        self._parser: httptools.HttpResponseParser | None = None
        self._head: asyncio.Future[Response] | None = None
        self._raw: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._interim = False
        self._head_only = False
        self._body: Body | None = None
        self._complete = True
        self._keep = False
        self._released = True
        self._paused = False
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._stated = True  # the answer's length is stated (Content-Length or chunks)
        self._spoiled = False  # a second answer arrived unasked: never reuse

    # asyncio's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport: create_connection's

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None or self._complete:  # nothing asked: an idle connection must stay silent
            self.abort()
            return
        self.received = True
        self._last_read = self.loop.time()
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionBroken("the upstream switched protocols, which a proxied request never asks"))
        except httptools.HttpParserError as exc:
            self._fail(ConnectionBroken(f"the upstream sent a malformed answer ({exc})"))

    def eof_received(self) -> bool:
        if self._complete:
            self.closed = True  # an idle connection the upstream closed: never picked again
        return False  # close; connection_lost ends a close-delimited body

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        self._stop_timer()
        if not self._complete:
            body = self._body
            if body is not None and exc is None and not self._stated:
                self._complete = True  # the body was delimited by the close
                body._finish()
            else:
                self._fail(ConnectionBroken("the upstream closed the connection before its answer was complete"))

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    # httptools' side
    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        if self._body is not None:  # a second answer to one request
            self._spoiled = True
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self._interim = True
            self._raw = []
            self._reason = b""
            return
        headers: CIMultiDict[str] = CIMultiDict(
            (name.decode("latin-1"), value.decode("utf-8", "surrogateescape")) for name, value in self._raw)
        self._raw = []
        # Neither Content-Length nor chunks: the body runs until the connection closes.
        self._stated = "content-length" in headers or "chunked" in headers.get("transfer-encoding", "").lower()
        encoding = headers.get("content-encoding", "").strip().lower()
        kind = DECODERS.get(encoding)
        body = self._body = Body(self, kind(encoding) if kind is not None else None)
        response = Response(self, status, self._reason.decode("latin-1"), CIMultiDictProxy(headers), body,
                            encoding if kind is None and encoding not in ("", "identity") else None)
        self._reason = b""
        if self._head_only:  # HEAD: a Content-Length describes a body that never comes
            self._complete = True
            self._keep = False
            self._stop_timer()
            body._finish()
        head = self._head
        if head is not None and not head.done():
            head.set_result(response)

    def on_body(self, data: bytes) -> None:
        if self._body is not None and not self._complete:
            self._body._feed(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._complete or self._spoiled:  # HEAD, already settled; or an unasked answer
            return
        assert self._parser is not None
        self._complete = True
        self._keep = self._parser.should_keep_alive()
        self._stop_timer()
        if self._body is not None:
            self._body._finish()

    # the pool's side
    async def send(self, method: str, target: str, head: bytes, content: bytes | None) -> Response:
        self._parser = httptools.HttpResponseParser(self)
        self._complete = False
        self._released = False
        self._keep = False
        self._body = None
        self._head_only = method == "HEAD"
        self.received = False
        self._stated = True
        self._spoiled = False
        assert self.transport is not None
        self._head = self.loop.create_future()
        if content and len(content) > PIECE:
            self.transport.write(head)
            self.transport.write(content)
        else:
            self.transport.write(head + content if content else head)
        self._last_read = self.loop.time()
        self._arm()
        try:
            return await self._head
        finally:
            self._head = None

    def finished(self) -> None:
        if self._released:
            return
        self._released = True
        if self._complete and self._keep and not self._spoiled and not self.closed:
            self.pool.park(self)
        else:
            self.abort()

    def idle(self) -> None:
        """Parked in the pool: nothing of the last answer is kept."""
        self._parser = None
        self._body = None

    def abort(self) -> None:
        self._released = True
        self._stop_timer()
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.abort()
        if not self._complete:
            self._fail(ConnectionBroken("the connection was closed"))

    def awaiting(self) -> None:
        """A reader waits for the body: the read timeout runs again."""
        if self._timer is None and not self._complete:
            self._last_read = self.loop.time()
            self._arm()

    def _fail(self, exc: BaseException) -> None:
        self._complete = True
        self._keep = False
        self._stop_timer()
        head = self._head
        if head is not None and not head.done():
            head.set_exception(exc)
        if self._body is not None:
            self._body._fail(exc)
        if not self.closed and self.transport is not None:
            self.closed = True
            self.pool.forget(self)
            self.transport.abort()

    def _arm(self) -> None:
        timeout = self.pool.read_timeout
        if timeout and self._timer is None:
            self._timer = self.loop.call_at(self._last_read + timeout, self._check)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        """The read timeout's alarm: it fails the answer only if someone waits and nothing came."""
        self._timer = None
        if self._complete:
            return
        timeout = self.pool.read_timeout or 0.0
        waiting = (self._head is not None and not self._head.done()) or (
            self._body is not None and self._body.waiting)
        if waiting and self.loop.time() - self._last_read >= timeout:
            self._fail(ReadTimeout(f"the upstream sent nothing for {timeout:g} s"))
        elif waiting:
            self._arm()
        # nobody waits (the reader is busy or gone): the alarm is set again when one does


class Pool:
    """Keep-alive connections per origin, without a limit (each open stream holds one for
    minutes); :meth:`request` sends one request and returns once its answer's head arrived."""

    def __init__(self, connect_timeout: float | None, read_timeout: float | None, keepalive: float = 30.0,
                 tls: ssl.SSLContext | None = None) -> None:
        """``tls``: the context for ``https`` origins; by default the system's (:meth:`tls`)."""
        self.loop = asyncio.get_running_loop()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive = keepalive
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._tls = tls
        self._sweep: asyncio.TimerHandle | None = None

    async def request(self, method: str, url: str, headers: list[tuple[str, str]],
                      content: bytes | None = None) -> Response:
        origin, target = split_url(url)
        head = _head(method, target, origin.authority, headers, content)
        retry = method in IDEMPOTENT
        while True:
            conn = self._reuse(origin) or await self._connect(origin)
            try:
                return await conn.send(method, target, head, content)
            except ConnectionBroken:
                if not (retry and conn.reused and not conn.received):
                    raise
                retry = False  # a kept connection the upstream had closed: once on a new one
            except BaseException:
                conn.abort()
                raise

    def _reuse(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        stale = self.loop.time() - self.keepalive
        while idle and idle[0].idle_since < stale:
            idle.popleft().abort()
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return None

    def tls(self) -> ssl.SSLContext:
        """The context for ``https`` origins: the one given, else the system's default, made
        once. Making it loads the CA store (~30 ms here, holding the GIL): call this before
        the first request (:meth:`headroom.proxy.upstream.Upstream.prepare`) to keep that
        off its path (aiohttp made its context at import)."""
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def _connect(self, origin: Origin) -> _Connection:
        tls = self.tls() if origin.scheme == "https" else None
        conn = _Connection(self, origin)
        try:
            # wait_for, not asyncio.timeout: Python 3.10 is supported, and its asyncio.TimeoutError
            # is not the built-in TimeoutError the callers catch (ConnectTimeout is).
            conn.transport = await asyncio.wait_for(self._open_socket(origin, conn, tls), self.connect_timeout)
        except asyncio.TimeoutError:
            raise ConnectTimeout(f"no connection to {origin.authority} within {self.connect_timeout:g} s") from None
        except OSError as exc:  # refused, unreachable, unknown host, a TLS handshake that failed
            raise Unreachable(f"{origin.authority}: {exc.strerror or exc}") from None
        self._open.add(conn)
        return conn

    async def _open_socket(self, origin: Origin, conn: _Connection, tls: ssl.SSLContext | None) -> asyncio.Transport:
        """The connection's transport (set here too: uvloop may call ``connection_made`` later)."""
        infos = await self.loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
        # Happy Eyeballs (RFC 8305), as aiohttp does: an IPv6 address that does not answer
        # costs 0.25 s, not the connect timeout (uvloop has no such option).
        sock = await aiohappyeyeballs.start_connection(infos, happy_eyeballs_delay=0.25, interleave=1)
        try:
            transport, _ = await self.loop.create_connection(
                lambda: conn, sock=sock, ssl=tls, server_hostname=origin.host if tls else None)
        except BaseException:
            sock.close()
            raise
        return transport  # type: ignore[return-value]  # a stream transport

    def park(self, conn: _Connection) -> None:
        conn.idle_since = self.loop.time()
        conn.idle()
        self._idle.setdefault(conn.origin, deque()).append(conn)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self.keepalive, self._expire)

    def forget(self, conn: _Connection) -> None:
        self._open.discard(conn)

    def _expire(self) -> None:
        """Close connections idle for ``keepalive`` seconds, the pool's own too (not only on reuse)."""
        self._sweep = None
        stale = self.loop.time() - self.keepalive
        for idle in self._idle.values():
            while idle and (idle[0].closed or idle[0].idle_since < stale):
                idle.popleft().abort()
        if any(self._idle.values()):
            self._sweep = self.loop.call_later(self.keepalive, self._expire)

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()


def _head(method: str, target: str, authority: str, headers: list[tuple[str, str]],
          content: bytes | None) -> bytes:
    """The request's head, refused if a name or value would break out of its line."""
    parts = [f"{method} {target} HTTP/1.1\r\nHost: {authority}\r\n"]
    parts.extend(f"{name}: {value}\r\n" for name, value in headers)
    if content is not None or method in _WITH_LENGTH:
        parts.append(f"Content-Length: {len(content) if content else 0}\r\n")
    parts.append("\r\n")
    text = "".join(parts)
    lines = len(parts) + 1  # the request line and Host share the first part
    if text.count("\n") != lines or text.count("\r") != lines or "\0" in text or " " in target:
        raise ValueError("a request line or header carries CR, LF, NUL or a space where it must not")
    return text.encode("utf-8", "surrogateescape")
