"""Finding the primary through Redis Sentinel, for :class:`~headroom.state.resp.RespClient`.

A ``redis+sentinel://`` URL names sentinels and a primary (``sentinel monitor <name> …``),
never the primary's address. Every new connection (the first one and every reconnect after
a failure, a timeout or a ``READONLY`` reply) finds it afresh:

1. ask the sentinels in turn ``SENTINEL get-master-addr-by-name <name>`` — the one that
   answered last time first; one that is down, refuses or does not know the name is skipped;
2. connect to the address it gives and send the handshake with ``ROLE`` behind it;
3. keep the connection only if ``ROLE`` says ``master``. During a failover a sentinel may
   still name the old primary (dead, or already demoted to a replica): then the next
   sentinel is asked, and an address already tried is not tried again.

If no sentinel names a reachable primary, the open fails with ``ConnectionError`` and the
store's outage handling takes over (fail open, probe again after ``retry_interval``): no
connection is ever kept to a replica, and nothing is pinned to an old answer.

Each sentinel's answer and each connection attempt is bounded by the client's
``connect_timeout``; a sentinel connection for a question lives for that question only.

A failover that leaves the old primary running (``SENTINEL FAILOVER``, a partition) does not
break our connection, and the sentinels demote the old primary only when they next look at
it (up to 10 s later): until then it still accepts writes, which are lost when it becomes a
replica. So :class:`SwitchWatch` also subscribes, on the sentinel that answered last, to
``+switch-master``: when it names a new address for our primary, the connection is retired
(the commands in flight finish; the next call rediscovers) instead of writing on for 10 s.
The watch is a convenience on top of the rules above, not a condition for them: if its
sentinel goes away it tries the next one every second, and a missed message still ends in
a ``READONLY`` reply or a broken connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import hiredis
from redis import exceptions as rx

from headroom.state.redis_connection import Connection, new_reader, open_connection, open_socket, replies
from headroom.state.redis_url import Command, Endpoint

_RESUBSCRIBE_SECONDS = 1.0


async def ask_sentinel(endpoint: Endpoint, host: str, port: int, timeout: float) -> tuple[str, int] | None:
    """Where the sentinel at ``host:port`` says the primary of ``endpoint.service`` is;
    ``None`` when it does not know that name. Raises redis-py errors or ``OSError``."""
    sentinel = endpoint.sentinel(host, port)
    commands: list[Command] = sentinel.handshake("")
    commands.append(("SENTINEL", "get-master-addr-by-name", endpoint.service))
    connection, replies = await open_connection(sentinel, commands, timeout)
    connection.fail(rx.ConnectionError("sentinel query done"))  # closes it; nothing is waiting
    answer = replies[-1]
    if not answer:
        return None
    primary_host, primary_port = answer
    return _text(primary_host), int(primary_port)


async def open_primary(endpoint: Endpoint, handshake: list[Command], timeout: float,
                       order: list[int]) -> tuple[Connection, tuple[str, int]]:
    """A connection to the current primary (handshake done, ``ROLE`` checked) and its address.

    ``order`` lists the sentinels' indices in the order to ask them; the one that answered is
    moved to the front (the caller keeps the list between calls)."""
    problems: list[str] = []
    tried: set[tuple[str, int]] = set()
    for index in list(order):
        host, port = endpoint.sentinels[index]
        try:
            address = await ask_sentinel(endpoint, host, port, timeout)
        except (rx.RedisError, OSError) as exc:
            problems.append(f"sentinel {host}:{port}: {type(exc).__name__}: {exc}")
            continue
        if address is None:
            problems.append(f"sentinel {host}:{port} does not monitor {endpoint.service!r}")
            continue
        if address in tried:
            continue
        tried.add(address)
        try:
            connection, replies = await open_connection(endpoint.at(*address), [*handshake, ("ROLE",)], timeout)
        except (rx.RedisError, OSError) as exc:
            problems.append(f"{_show(address)} (named by {host}:{port}): {type(exc).__name__}: {exc}")
            continue
        role = _role(replies[-1])
        if role != "master":
            connection.fail(rx.ConnectionError(f"{_show(address)} is a {role}, not the primary"))
            problems.append(f"{_show(address)} (named by {host}:{port}) is a {role}, not the primary")
            continue
        order.remove(index)
        order.insert(0, index)
        return connection, address
    raise rx.ConnectionError(f"no primary for {endpoint.service!r} found through the sentinels: "
                             + "; ".join(problems or ["no sentinel answered"]))


def _role(reply: Any) -> str:
    """``master``, ``slave`` or ``sentinel`` from a ``ROLE`` reply."""
    if isinstance(reply, list) and reply:
        return _text(reply[0])
    return f"server with an unexpected ROLE reply {reply!r}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _show(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Subscriber(asyncio.Protocol):
    """A sentinel connection in subscribed mode: every reply is a push, handed to ``on_push``."""

    def __init__(self, on_push: Callable[[Any], None]) -> None:
        self._reader = new_reader()
        self._on_push = on_push
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            for reply in replies(self._reader, data):
                if isinstance(reply, hiredis.ReplyError):  # AUTH or SUBSCRIBE refused
                    raise hiredis.ProtocolError(str(reply))
                self._on_push(reply)
        except hiredis.ProtocolError:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class SwitchWatch:
    """Calls ``on_switch(address)`` when a sentinel announces a new primary for our service."""

    def __init__(self, endpoint: Endpoint, timeout: float, on_switch: Callable[[tuple[str, int]], None]) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.on_switch = on_switch
        self.index: int | None = None  # the sentinel watched (or tried) now
        self.subscribed = False  # tests wait for it
        self._task: asyncio.Task | None = None

    def watch(self, index: int) -> None:
        """Watch through sentinel ``index`` (it just answered), unless a watch is running."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run(index))

    async def _run(self, index: int) -> None:
        count = len(self.endpoint.sentinels)
        while True:
            self.index = index
            subscriber: _Subscriber | None = None
            try:
                subscriber = await self._subscribe(*self.endpoint.sentinels[index])
                await subscriber.lost
            except (OSError, asyncio.TimeoutError, ValueError):
                pass
            finally:
                self.subscribed = False
                if subscriber is not None:
                    subscriber.close()
            index = (index + 1) % count
            await asyncio.sleep(_RESUBSCRIBE_SECONDS)

    async def _subscribe(self, host: str, port: int) -> _Subscriber:
        sentinel = self.endpoint.sentinel(host, port)
        subscriber = await asyncio.wait_for(open_socket(sentinel, lambda: _Subscriber(self._pushed)), self.timeout)
        commands = [*sentinel.handshake(""), ("SUBSCRIBE", "+switch-master")]
        assert subscriber.transport is not None  # connection_made ran before open_socket returned
        subscriber.transport.write(b"".join(hiredis.pack_command(tuple(c)) for c in commands))
        return subscriber

    def _pushed(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) != 3:
            return  # AUTH's OK
        kind, _channel, payload = reply
        if kind == b"subscribe":
            self.subscribed = True
        elif kind == b"message":
            # "<name> <old host> <old port> <new host> <new port>"
            fields = _text(payload).split()
            if len(fields) == 5 and fields[0] == self.endpoint.service:
                self.on_switch((fields[3], int(fields[4])))

    def close(self) -> None:
        if self._task is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed already
                self._task.cancel()
            self._task = None
