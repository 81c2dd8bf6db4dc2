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

Moving primaries: a ``READONLY`` reply means the server was demoted to a replica (a
failover); the connection takes no new commands (those in flight still get their replies)
and the next call opens a new one. That new connection resolves the host name again
(``loop.create_connection`` calls ``getaddrinfo`` each time: nothing caches an address), so
a managed endpoint whose DNS name moved to the new primary is followed; with a
``redis+sentinel://`` URL the sentinels are asked again (:mod:`headroom.state.sentinel`).

Three parts, one job each: the URL (:mod:`headroom.state.redis_url`), one socket and its
replies (:mod:`headroom.state.redis_connection`), and this client, which keeps one connection
open and opens the next when it breaks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis import exceptions as rx

from headroom.state.redis_connection import Connection, open_connection, round_trip
from headroom.state.redis_url import Command, Endpoint
from headroom.state.sentinel import SwitchWatch, open_primary


class RespClient:
    """Commands over one shared, lazily (re)opened connection.

    ``timeout`` bounds each call from write to reply; ``connect_timeout`` bounds opening
    the connection, handshake included (through Sentinel: each sentinel's answer and each
    connection attempt to the primary it names).
    """

    def __init__(self, url: str, *, timeout: float = 1.0, connect_timeout: float = 1.0,
                 client_name: str = "headroom") -> None:
        self.endpoint = Endpoint.from_url(url)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.client_name = client_name
        self._connection: Connection | None = None
        self._opening: asyncio.Future | None = None
        self.connects = 0  # connections opened so far (tests read it)
        self.primary: tuple[str, int] | None = None  # Sentinel: the address the last connection found
        self._sentinel_order = list(range(len(self.endpoint.sentinels)))  # the one that answered last first
        self.switch_watch: SwitchWatch | None = None  # Sentinel: set once connected

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
        return await round_trip(connection, commands, self.timeout, raise_replies)

    async def transaction(self, commands: Sequence[Command]) -> list[Any]:
        """``MULTI`` … ``EXEC`` in one write (nothing else can slip in between)."""
        replies = await self.execute_many([("MULTI",), *commands, ("EXEC",)])
        return replies[-1]

    async def _connect(self) -> Connection:
        """Open a connection, or join the opening already under way."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
            self._opening.add_done_callback(self._opened)
        return await asyncio.shield(self._opening)

    def _opened(self, opening: asyncio.Future) -> None:
        self._opening = None
        if not opening.cancelled() and opening.exception() is None:
            self._connection = opening.result()

    async def _open(self) -> Connection:
        handshake = self.endpoint.handshake(self.client_name)
        if self.endpoint.sentinels:
            connection, self.primary = await open_primary(self.endpoint, handshake, self.connect_timeout,
                                                          self._sentinel_order)
            if self.switch_watch is None:
                self.switch_watch = SwitchWatch(self.endpoint, self.connect_timeout, self._switched)
            self.switch_watch.watch(self._sentinel_order[0])
        else:
            connection, _ = await open_connection(self.endpoint, handshake, self.connect_timeout)
        self.connects += 1
        return connection

    def _switched(self, address: tuple[str, int]) -> None:
        """A sentinel announced a new primary: leave the old one once in-flight commands finish."""
        if address != self.primary and self._connection is not None:
            self._connection.retire()

    async def close(self) -> None:
        if self.switch_watch is not None:
            self.switch_watch.close()
        if self._opening is not None:
            self._opening.cancel()
        if self._connection is not None:
            self._connection.fail(rx.ConnectionError("Redis client closed"))
            self._connection = None
