"""Start-up checks of the listening address, before anything else starts.

A port in use, a host that does not resolve, or an address that is not on this machine is
found by trying what the server will do (bind and listen, then close) and reported as one
line with its fix, instead of a traceback from deep inside Sanic after the helpers (private
Redis, model server) have started. The same words describe the error if it still happens at
the server's own bind (another process took the port in between): :func:`listen_error`.
"""

from __future__ import annotations

import errno
import socket
from ipaddress import ip_address

from headroom.config import ConfigError


def check_listen(host: str, port: int, *, host_flag: str = "--host", port_flag: str = "--port") -> None:
    """Raise :class:`ConfigError` (one line, with the fix) when ``host:port`` cannot be listened on.

    Mirrors ``sanic.server.socket.bind_socket``: an IP literal gets its own family, a name an
    ``AF_INET`` socket; ``SO_REUSEADDR`` as Sanic (and asyncio) set it, so a port left in
    TIME_WAIT by the previous run is not reported as in use.
    """
    try:
        family = socket.AF_INET6 if ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(1)
    except OSError as exc:
        error = listen_error(exc, host, port, host_flag=host_flag, port_flag=port_flag)
        if error is None:
            error = ConfigError(f"cannot listen on {host}:{port} ({host_flag}, {port_flag}): "
                                f"{exc.strerror or exc}")
        raise error from None


def listen_error(exc: BaseException, host: str, port: int, *, host_flag: str = "--host",
                 port_flag: str = "--port") -> ConfigError | None:
    """The one-line error for a failed bind of ``host:port``; ``None`` when ``exc`` is not one
    of the binding errors an operator can fix by a flag (then it is not ours to rename)."""
    if isinstance(exc, socket.gaierror):
        return ConfigError(f"{host_flag} {host}: not an address nor a name that resolves ({exc.strerror}): "
                           f"give an IP address of this machine (127.0.0.1: this machine only, 0.0.0.0: all)")
    if isinstance(exc, OverflowError):
        return ConfigError(f"{port_flag} {port}: must be a whole number from 1 to 65535")
    if not isinstance(exc, OSError):
        return None
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(f"port {port} is in use on {host}: stop what holds it or pick another with {port_flag}")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(f"{host_flag} {host}: not an address of this machine: give one of its own "
                           f"(127.0.0.1: this machine only, 0.0.0.0: all)")
    if exc.errno == errno.EACCES:
        return ConfigError(f"port {port} needs privileges on this machine: pick one above 1023 with {port_flag}")
    if exc.errno == errno.EAFNOSUPPORT:
        return ConfigError(f"{host_flag} {host}: this machine has no networking of that address family: "
                           f"give an address it has (127.0.0.1: this machine only, 0.0.0.0: all)")
    return None
