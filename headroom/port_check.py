"""Who holds the proxy's port: nobody, a Headroom, or something else.

``headroom wrap`` reuses a Headroom it finds there (and refuses anything else), and
``headroom doctor`` reports it. Standard library only: both run before anything heavy is
imported, and neither needs the proxy's dependencies to answer.
"""

from __future__ import annotations

import errno
import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Literal

Holder = Literal["free", "headroom", "other", "forbidden"]


def connect_host(host: str) -> str:
    """The address a local client uses to reach a proxy bound to ``host`` (a wildcard bind is
    reached on loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def base_url(host: str, port: int) -> str:
    address = connect_host(host)
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


# Never through an HTTP proxy from the environment: the address is a local one.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, timeout: float):
    """``GET url`` straight to the address (urllib's response; HTTPError for 4xx/5xx)."""
    return _direct.open(url, timeout=timeout)


@dataclass(frozen=True)
class PortState:
    holder: Holder
    detail: str = ""  # what answered, for "other"; the OS error, for "forbidden"


def _bindable(host: str, port: int) -> OSError | None:
    """None when ``host:port`` could be bound now; the error otherwise."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Sanic binds: TIME_WAIT is no holder
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def identify(url: str, timeout: float = 2.0) -> PortState:
    """Ask ``GET /`` at ``url``: a Headroom answers ``{"service": "headroom"}``."""
    try:
        with get(f"{url}/", timeout) as answer:
            body = answer.read(4096)
    except urllib.error.HTTPError as exc:
        return PortState("other", f"an HTTP server that answers GET / with {exc.code}")
    except (OSError, ValueError) as exc:
        return PortState("other", f"something that does not answer HTTP ({exc.__class__.__name__})")
    try:
        if json.loads(body).get("service") == "headroom":
            return PortState("headroom")
    except (ValueError, AttributeError):
        pass
    return PortState("other", "an HTTP server that is not Headroom")


def check_port(host: str, port: int, timeout: float = 2.0) -> PortState:
    """Free (bindable), held by a Headroom, held by something else, or not ours to bind."""
    error = _bindable(host, port)
    if error is None:
        return PortState("free")
    if error.errno != errno.EADDRINUSE:
        return PortState("forbidden", str(error))
    return identify(base_url(host, port), timeout)
