"""One socket to Redis: commands written at once, replies handed to their callers in order.

hiredis packs each command and parses the replies in C; replies are matched to callers by order
(Redis answers each connection in order), so concurrent callers share one socket. Used by the
client (:mod:`headroom.state.resp`) and by the Sentinel discovery (:mod:`headroom.state.sentinel`),
which also reads replies off a socket of its own with :func:`replies`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import hiredis
from redis import exceptions as rx

from headroom.state.redis_url import Command, Endpoint

P = TypeVar("P", bound=asyncio.Protocol)

_NO_REPLY_YET = object()  # hiredis: "no complete reply buffered yet"

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



def new_reader() -> hiredis.Reader:
    return hiredis.Reader(notEnoughData=_NO_REPLY_YET)


def replies(reader: hiredis.Reader, data: bytes) -> Iterator[Any]:
    """Feed ``data`` to ``reader``; every reply now complete, in order (``hiredis.ReplyError`` for
    an error reply). Raises ``hiredis.ProtocolError`` on bytes that are not RESP."""
    reader.feed(data)
    while (reply := reader.gets()) is not _NO_REPLY_YET:
        yield reply


class Connection(asyncio.Protocol):
    """One socket to Redis: writes commands, hands replies to the waiting futures in order."""

    def __init__(self) -> None:
        self._reader = new_reader()
        self._waiters: deque[asyncio.Future] = deque()
        self._transport: asyncio.Transport | None = None
        self.closed = False

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            for reply in replies(self._reader, data):
                waiter = self._waiters.popleft()
                if isinstance(reply, hiredis.ReplyError):
                    error = reply_error(str(reply))
                    if isinstance(error, rx.ReadOnlyError):
                        # A demoted primary (failover): no new commands here; the next call
                        # opens a new connection to wherever the primary is now.
                        self.retire()
                    if not waiter.done():
                        waiter.set_exception(error)
                elif not waiter.done():  # done: its caller was cancelled, the reply is not wanted
                    waiter.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked for
            self.fail(rx.ConnectionError(f"Redis protocol error: {exc}"))
            return
        if self.closed and not self._waiters:  # retired, and drained: close it
            self.fail(rx.ConnectionError("Redis connection retired"))

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

    def retire(self) -> None:
        """Take no new commands (the next call opens a new connection); the commands in
        flight still get their replies, then the socket closes."""
        self.closed = True
        if not self._waiters and self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def fail(self, error: Exception) -> None:
        """Close the socket and fail every command still waiting on it."""
        self.closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()


async def open_socket(endpoint: Endpoint, protocol: Callable[[], P]) -> P:
    """A socket to ``endpoint``'s own address, handled by ``protocol()``."""
    loop = asyncio.get_running_loop()
    if endpoint.path is not None:
        _, connection = await loop.create_unix_connection(protocol, endpoint.path)
    else:
        # The host name is resolved here, on every connection: a DNS name that moved to a
        # new primary is followed on the next reconnect.
        context = endpoint.tls_context()
        _, connection = await loop.create_connection(
            protocol, endpoint.host, endpoint.port, ssl=context,
            server_hostname=endpoint.host if context else None)
    return connection


async def open_connection(endpoint: Endpoint, commands: Sequence[Command],
                          timeout: float) -> tuple[Connection, list[Any]]:
    """A new connection to ``endpoint``'s own address (no discovery) and the replies to
    ``commands``, the first thing sent on it (the handshake); each step within ``timeout``."""
    try:
        connection = await asyncio.wait_for(open_socket(endpoint, Connection), timeout)
    except asyncio.TimeoutError as exc:
        raise rx.TimeoutError(f"Redis at {endpoint.address} did not accept a connection within {timeout:g}s") \
            from exc
    if not commands:
        return connection, []
    try:
        return connection, await round_trip(connection, commands, timeout)
    except rx.RedisError as exc:
        connection.fail(exc)
        if isinstance(exc, rx.ResponseError):  # e.g. SELECT on a database that does not exist
            raise rx.ConnectionError(f"Redis at {endpoint.address} refused the connection set-up: {exc}") from exc
        raise


async def round_trip(connection: Connection, commands: Sequence[Command], timeout: float,
                     raise_replies: bool = True) -> list[Any]:
    """Write ``commands`` at once and wait for all their replies, within ``timeout`` in all.
    See :meth:`~headroom.state.resp.RespClient.execute_many` for ``raise_replies``."""
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
        # Replies arrive in order, so the last future completes last (or all fail together).
        await asyncio.wait((futures[-1],))
    finally:
        timer.cancel()
    replies = [f.exception() or f.result() for f in futures]  # retrieving each marks it seen
    for reply in replies:
        if isinstance(reply, Exception) and (raise_replies or not isinstance(reply, rx.ResponseError)):
            raise reply
    return replies


def _expire(futures: list[asyncio.Future], connection: Connection, timeout: float) -> None:
    if not futures[-1].done():
        connection.fail(rx.TimeoutError(f"Redis did not answer within {timeout:g}s"))
