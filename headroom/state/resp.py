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
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit, urlunsplit

import hiredis
from redis import exceptions as rx

Command = Sequence[Any]
P = TypeVar("P", bound=asyncio.Protocol)

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


SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT = 26379
_SENTINEL_QUERY = frozenset({"db", "password", "sentinel_username", "sentinel_password", "ssl_cert_reqs",
                             "ssl_ca_certs"})
_SECRET_QUERY = frozenset({"password", "sentinel_password"})


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect, parsed from a ``redis://``, ``rediss://``, ``unix://``,
    ``redis+sentinel://`` or ``rediss+sentinel://`` URL.

    With ``sentinels`` the address is not fixed: ``host`` and ``port`` are unused and every
    new connection asks the sentinels where the primary of ``service`` is now
    (:mod:`headroom.state.sentinel`); :meth:`at` gives the endpoint of the address found.
    ``username``/``password``/``db``/TLS apply to the primary, ``sentinel_username`` and
    ``sentinel_password`` to the sentinels (TLS, when on, to both).
    """

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a Unix socket
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False
    tls_verify: bool = True
    tls_ca_file: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None  # the primary's name at the sentinels (``sentinel monitor <name> …``)
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """Parse and validate a Redis URL; a malformed one raises ``ValueError`` saying why."""
        try:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme in SENTINEL_SCHEMES:
                return cls._from_sentinel_url(parts)
            if scheme not in ("redis", "rediss", "unix"):
                raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}: use redis://, rediss://, unix:// "
                                 "or redis+sentinel://")
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            username = unquote(parts.username) if parts.username else None
            password = unquote(parts.password) if parts.password is not None else query.get("password")
            if scheme == "unix":
                if not parts.path:
                    raise ValueError("a unix:// URL needs the socket's path: unix:///path/to/redis.sock")
                return cls(path=unquote(parts.path), username=username, password=password,
                           db=_db(query.get("db", "0")))
            db_path = parts.path.strip("/")
            return cls(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 6379,
                username=username,
                password=password,
                db=_db(db_path or query.get("db", "0")),
                tls=scheme == "rediss",
                tls_verify=query.get("ssl_cert_reqs", "required").lower() != "none",
                tls_ca_file=query.get("ssl_ca_certs"),
            )
        except ValueError as exc:
            raise ValueError(f"invalid Redis URL {redact_url(url)}: {exc}") from None

    @classmethod
    def _from_sentinel_url(cls, parts: SplitResult) -> Endpoint:
        """``redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/<service>[/<db>]
        [?sentinel_password=…&sentinel_username=…&db=…&ssl_cert_reqs=none&ssl_ca_certs=…]``"""
        form = "redis+sentinel://[[user]:password@]host:26379[,host:26379…]/<master-name>[/<db>]"
        query: dict[str, str] = {}
        for key, values in parse_qs(parts.query, keep_blank_values=True).items():
            if key not in _SENTINEL_QUERY:
                raise ValueError(f"unknown parameter {key!r} (known: {', '.join(sorted(_SENTINEL_QUERY))})")
            query[key] = values[-1]
        userinfo, at, hostlist = parts.netloc.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if colon else None
        if password is None:
            password = query.get("password")
        if not hostlist:
            raise ValueError(f"no sentinel given: {form}")
        sentinels = tuple(_host_port(item, SENTINEL_PORT) for item in hostlist.split(","))
        names = parts.path.strip("/").split("/") if parts.path.strip("/") else []
        if not names or len(names) > 2 or not names[0]:
            raise ValueError(f"the path must be the master name and, optionally, the database: {form}")
        if len(names) == 2 and "db" in query:
            raise ValueError("the database is given twice (path and ?db=)")
        return cls(
            username=username,
            password=password,
            db=_db(names[1] if len(names) == 2 else query.get("db", "0")),
            tls=parts.scheme.lower() == "rediss+sentinel",
            tls_verify=query.get("ssl_cert_reqs", "required").lower() != "none",
            tls_ca_file=query.get("ssl_ca_certs"),
            sentinels=sentinels,
            service=unquote(names[0]),
            sentinel_username=query.get("sentinel_username") or None,
            sentinel_password=query.get("sentinel_password"),
        )

    def at(self, host: str, port: int) -> Endpoint:
        """This endpoint with a fixed address (the primary a sentinel named)."""
        return replace(self, host=host, port=port, sentinels=(), service=None, sentinel_username=None,
                       sentinel_password=None)

    def sentinel(self, host: str, port: int) -> Endpoint:
        """How to reach one sentinel: its own credentials, this endpoint's TLS settings, no database."""
        return Endpoint(host=host, port=port, username=self.sentinel_username, password=self.sentinel_password,
                        tls=self.tls, tls_verify=self.tls_verify, tls_ca_file=self.tls_ca_file)

    @property
    def address(self) -> str:
        """For messages: the socket path, ``host:port`` or the sentinels and the primary's name."""
        if self.path is not None:
            return self.path
        if self.sentinels:
            return f"{self.service!r} via sentinels " + ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"{self.host}:{self.port}"

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


def _db(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"the database must be a number, not {text!r}")
    return int(text)


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    item = item.strip()
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"malformed address {item!r}")
        port_text = rest[1:]
    else:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ValueError(f"an address without a host: {item!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in {item!r}")
    return host, int(port_text)


def redact_url(url: str) -> str:
    """The URL without its passwords (user info and ``password``/``sentinel_password``
    parameters), for logs and ``--print-config``; never raises."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    query = "&".join(
        f"{piece.split('=', 1)[0]}=***" if unquote(piece.split("=", 1)[0]).lower() in _SECRET_QUERY else piece
        for piece in parts.query.split("&")) if parts.query else ""
    if netloc == parts.netloc and query == parts.query:
        return url
    if "://" not in url:
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


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
                          timeout: float) -> tuple[_Connection, list[Any]]:
    """A new connection to ``endpoint``'s own address (no discovery) and the replies to
    ``commands``, the first thing sent on it (the handshake); each step within ``timeout``."""
    try:
        connection = await asyncio.wait_for(open_socket(endpoint, _Connection), timeout)
    except asyncio.TimeoutError as exc:
        raise rx.TimeoutError(f"Redis at {endpoint.address} did not accept a connection within {timeout:g}s") \
            from exc
    if not commands:
        return connection, []
    try:
        return connection, await RespClient._exchange(connection, commands, timeout)
    except rx.RedisError as exc:
        connection.fail(exc)
        if isinstance(exc, rx.ResponseError):  # e.g. SELECT on a database that does not exist
            raise rx.ConnectionError(f"Redis at {endpoint.address} refused the connection set-up: {exc}") from exc
        raise


def _expire(futures: list[asyncio.Future], connection: _Connection, timeout: float) -> None:
    if not futures[-1].done():
        connection.fail(rx.TimeoutError(f"Redis did not answer within {timeout:g}s"))


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
        self._connection: _Connection | None = None
        self._opening: asyncio.Future | None = None
        self.connects = 0  # connections opened so far (tests read it)
        self.primary: tuple[str, int] | None = None  # Sentinel: the address the last connection found
        self._sentinel_order = list(range(len(self.endpoint.sentinels)))  # the one that answered last first
        self.switch_watch: Any = None  # Sentinel: a SwitchWatch once connected

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
        handshake = self.endpoint.handshake(self.client_name)
        if self.endpoint.sentinels:
            from headroom.state.sentinel import SwitchWatch, open_primary  # it imports this module

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
