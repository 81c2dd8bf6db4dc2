"""Fixtures for the security tests: a listener standing in for an attacker's host, and an
upstream that redirects to it. (Request bodies are in :mod:`testkit.llm_requests`, the Redis
dump in :mod:`testkit.redis_dump`, the Redis server is ``module_redis`` in tests/conftest.py.)"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import pytest

from testkit.ports import free_port

# -- the attacker's host -----------------------------------------------------------------------


@dataclass
class Listener:
    """A TCP listener on 127.0.0.1 standing in for a host the proxy must never contact:
    it records every connection (and the first bytes sent on it)."""

    port: int
    received: list[bytes] = field(default_factory=list)

    @property
    def authority(self) -> str:
        return f"127.0.0.1:{self.port}"


def _listen(reply: bytes | None):
    port = free_port()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)
    listener = Listener(port)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                listener.received.append(data)
                if reply is not None:
                    try:
                        conn.sendall(reply)
                    except OSError:
                        pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, listener


@pytest.fixture(scope="module")
def evil():
    """The "evil" host: nothing may ever connect to it."""
    server, listener = _listen(None)
    yield listener
    server.close()


def redirect_reply(location: str) -> bytes:
    body = b'{"moved": true}'
    return (f"HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


@pytest.fixture(scope="module")
def redirecting_upstream(evil):
    """An upstream that answers every request with a redirect to the evil host."""
    server, listener = _listen(redirect_reply(f"http://{evil.authority}/v1/stolen"))
    yield listener
    server.close()
