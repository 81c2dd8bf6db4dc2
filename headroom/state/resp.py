"""A small pipelined Redis client: one connection per worker, shared by every request.

Why not redis-py's connection pool: each proxied request makes one script call on its
hot path, and redis-py's asyncio client spends longer in Python on it (pool checkout,
command packing, a timeout context, response callbacks) than Redis spends answering.
Here hiredis packs the command and parses the reply in C, the command is written at
once, and replies are matched to callers by order (Redis answers each connection in
order). Concurrent requests therefore share one socket (automatic pipelining) and never
wait for a free connection.

Failure model, kept simple on purpose: a connection that times out or breaks is thrown
away with every command still in flight on it (they fail with ``ConnectionError`` or
``TimeoutError``); the next command opens a new one. Reply errors (``-ERR …``) become
redis-py's exception classes (``NoScriptError``, ``ReadOnlyError`` …) so callers can tell
a script that must be loaded from a Redis that is not serving.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
from redis import exceptions as rx

Command = Sequence[Any]

_PENDING = object()  # hiredis: "no complete reply buffered yet"

# Reply-error prefixes that mean something to the caller; the rest are ResponseError.
_ERROR_CLASSES: dict[str, type[rx.RedisError]] = {
    "NOSCRIPT": rx.NoScriptError,
    "READONLY": rx.ReadOnlyError,
    "OOM": rx.OutOfMemoryError,
    "NOAUTH": rx.AuthenticationError,
    "WRONGPASS": rx.AuthenticationError,
    "LOADING": rx.BusyLoadingError,
    "BUSY": rx.BusyLoadingError,
    "EXECABORT": rx.ExecAbortError,
}


def reply_error(message: str) -> rx.RedisError:
    """The redis-py exception for a ``-PREFIX message`` reply."""
    return _ERROR_CLASSES.get(message.split(" ", 1)[0], rx.ResponseError)(message)


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect, parsed from a ``redis://``, ``rediss://`` or ``unix://`` URL."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a Unix socket
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False
    tls_verify: bool = True
    tls_ca_file: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        scheme = parts.scheme.lower()
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}: use redis://, rediss:// or unix://")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else query.get("password")
        if scheme == "unix":
            db = int(query.get("db", 0))
            return cls(path=unquote(parts.path), username=username, password=password, db=db)
        db_path = parts.path.strip("/")
        db = int(db_path) if db_path else int(query.get("db", 0))
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            username=username,
            password=password,
            db=db,
            tls=scheme == "rediss",
            tls_verify=query.get("ssl_cert_reqs", "required").lower() != "none",
            tls_ca_file=query.get("ssl_ca_certs"),
        )

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.tls_ca_file)
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def handshake(self, client_name: str) -> list[Command]:
        """The commands a new connection sends before any other."""
        commands: list[Command] = []
        if self.password is not None:
            commands.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
        if self.db:
            commands.append(("SELECT", self.db))
        if client_name:
            commands.append(("CLIENT", "SETNAME", client_name))
        return commands


class _Connection(asyncio.Protocol):
    """One socket to Redis: writes commands, hands replies to the waiting futures in order."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader(notEnoughData=_PENDING)
        self._waiters: deque[asyncio.Future] = deque()
        self._transport: asyncio.Transport | None = None
        self.closed = False

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not _PENDING:
                waiter = self._waiters.popleft()
                if waiter.done():  # its caller was cancelled: the reply is not wanted
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    waiter.set_exception(reply_error(str(reply)))
                else:
                    waiter.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked for
            self.fail(rx.ConnectionError(f"Redis protocol error: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(rx.ConnectionError(f"Redis connection lost: {exc}" if exc else "Redis closed the connection"))

    # -- use -----------------------------------------------------------------------------

    def send(self, payload: bytes, count: int) -> list[asyncio.Future]:
        """Write ``count`` packed commands at once; one future per reply."""
        if self.closed or self._transport is None or self._transport.is_closing():
            raise rx.ConnectionError("Redis connection is closed")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(count)]
        self._waiters.extend(futures)
        self._transport.write(payload)
        return futures

    def fail(self, error: Exception) -> None:
        """Close the socket and fail every command still waiting on it."""
        self.closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()


def _expire(futures: list[asyncio.Future], connection: _Connection, timeout: float) -> None:
    if not futures[-1].done():
        connection.fail(rx.TimeoutError(f"Redis did not answer within {timeout:g}s"))


class RespClient:
    """Commands over one shared, lazily (re)opened connection.

    ``timeout`` bounds each call from write to reply; ``connect_timeout`` bounds opening
    the connection, handshake included.
    """

    def __init__(self, url: str, *, timeout: float = 1.0, connect_timeout: float = 1.0,
                 client_name: str = "headroom") -> None:
        self.endpoint = Endpoint.from_url(url)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.client_name = client_name
        self._connection: _Connection | None = None
        self._opening: asyncio.Future | None = None
        self.connects = 0  # connections opened so far (tests read it)

    async def execute(self, *command: Any) -> Any:
        """One command; its reply (bytes, int, list …) or a redis-py exception."""
        return (await self.execute_many([command]))[0]

    async def execute_many(self, commands: Sequence[Command], *, raise_replies: bool = True) -> list[Any]:
        """Several commands in one write; their replies in order. Raises the first reply
        error only after every reply is in, so the connection stays in step.

        With ``raise_replies=False`` a command's reply error (``ResponseError``) takes its
        place in the list instead, so the caller can retry just the commands that failed;
        connection failures and timeouts still raise."""
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        return await self._exchange(connection, commands, self.timeout, raise_replies)

    async def transaction(self, commands: Sequence[Command]) -> list[Any]:
        """``MULTI`` … ``EXEC`` in one write (nothing else can slip in between)."""
        replies = await self.execute_many([("MULTI",), *commands, ("EXEC",)])
        return replies[-1]

    @staticmethod
    async def _exchange(connection: _Connection, commands: Sequence[Command], timeout: float,
                        raise_replies: bool = True) -> list[Any]:
        pack = hiredis.pack_command
        payload = b"".join(pack(tuple(command)) for command in commands)
        futures = connection.send(payload, len(commands))
        timer = asyncio.get_running_loop().call_later(timeout, _expire, futures, connection, timeout)
        try:
            if len(futures) == 1:
                try:
                    return [await futures[0]]
                except rx.ResponseError as exc:
                    if raise_replies:
                        raise
                    return [exc]
            # Replies arrive in order, so the last future settles last (or all fail together).
            await asyncio.wait((futures[-1],))
        finally:
            timer.cancel()
        replies = [f.exception() or f.result() for f in futures]  # retrieving each marks it seen
        for reply in replies:
            if isinstance(reply, Exception) and (raise_replies or not isinstance(reply, rx.ResponseError)):
                raise reply
        return replies

    async def _connect(self) -> _Connection:
        """Open a connection, or join the opening already under way."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
            self._opening.add_done_callback(self._opened)
        return await asyncio.shield(self._opening)

    def _opened(self, opening: asyncio.Future) -> None:
        self._opening = None
        if not opening.cancelled() and opening.exception() is None:
            self._connection = opening.result()

    async def _open(self) -> _Connection:
        try:
            connection = await asyncio.wait_for(self._open_socket(), self.connect_timeout)
        except asyncio.TimeoutError as exc:
            raise rx.TimeoutError(f"Redis did not accept a connection within {self.connect_timeout:g}s") from exc
        handshake = self.endpoint.handshake(self.client_name)
        if handshake:
            try:
                await self._exchange(connection, handshake, self.connect_timeout)
            except rx.RedisError as exc:
                connection.fail(exc)
                if isinstance(exc, rx.ResponseError):  # e.g. SELECT on a database that does not exist
                    raise rx.ConnectionError(f"Redis refused the connection set-up: {exc}") from exc
                raise
        self.connects += 1
        return connection

    async def _open_socket(self) -> _Connection:
        endpoint, loop = self.endpoint, asyncio.get_running_loop()
        if endpoint.path is not None:
            _, connection = await loop.create_unix_connection(_Connection, endpoint.path)
        else:
            context = endpoint.tls_context()
            _, connection = await loop.create_connection(
                _Connection, endpoint.host, endpoint.port, ssl=context,
                server_hostname=endpoint.host if context else None)
        return connection

    async def close(self) -> None:
        if self._opening is not None:
            self._opening.cancel()
        if self._connection is not None:
            self._connection.fail(rx.ConnectionError("Redis client closed"))
            self._connection = None
