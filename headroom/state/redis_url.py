"""Redis URLs: what to connect to and how, parsed once (:class:`Endpoint`); and their redaction.

``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://`` and ``rediss+sentinel://``. Apart from
the connection (:mod:`headroom.state.redis_connection`) and the client
(:mod:`headroom.state.resp`): the CLI validates and redacts URLs without opening anything.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit, urlunsplit

Command = Sequence[Any]  # one Redis command: its name, then its arguments

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
