"""Helpers for the security tests: raw HTTP over a socket, a listener standing in for an
attacker's host, request bodies that compression stores originals for, and a Redis dump."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import pytest

from testkit.ports import free_port
from testkit.services import REDIS_BIN, Mock, RedisProc

#: One client for every test: making an httpx client costs more than a request.
HTTP = httpx.Client(timeout=30)
ANTHROPIC_VERSION = "2023-06-01"


def anthropic_body(text: str, *, stream: bool = False, max_tokens: int = 16, tool_output: str | None = None) -> dict:
    messages: list[dict] = [{"role": "user", "content": text}]
    if tool_output is not None:
        messages = [
            {"role": "user", "content": "List the orders"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "fetch_orders",
                                               "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": tool_output},
                                         {"type": "text", "text": text}]},
        ]
    body = {"model": "claude-sonnet-4-5", "max_tokens": max_tokens, "messages": messages}
    if stream:
        body["stream"] = True
    return body


def openai_body(text: str, *, stream: bool = False, max_tokens: int = 16, tool_output: str | None = None) -> dict:
    messages: list[dict] = [{"role": "user", "content": text}]
    if tool_output is not None:
        messages = [
            {"role": "user", "content": text},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "fetch_orders", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": tool_output},
        ]
    body = {"model": "gpt-4o", "max_tokens": max_tokens, "messages": messages}
    if stream:
        body["stream"] = True
    return body


def bulky_json(rows: int = 400, salt: str = "") -> str:
    """A tool output the JSON compressor trims (and stores the original of, for /v1/retrieve)."""
    return json.dumps([{"id": i, "status": "shipped" if i % 7 else "delayed", "customer": f"cust-{salt}{i:05d}",
                        "total": round(i * 3.17, 2), "note": "standard delivery window"} for i in range(rows)])


def retrieval_keys(text: str) -> list[str]:
    """The retrieval keys named by compression markers in ``text``."""
    import re

    return re.findall(r"retrieve with key ([0-9a-f]{16})", text)


# -- the mock upstream's recording, through the shared client (testkit's Mock makes a new
#    httpx client per call, some 30 ms each) ---------------------------------------------------


@pytest.fixture(scope="module")
def upstream(mock) -> Mock:
    return mock


# -- raw HTTP -------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes = b""

    def json(self):
        return json.loads(self.body)


def send_raw(url: str, data: bytes, timeout: float = 10.0) -> Reply:
    """Write ``data`` byte for byte on a fresh connection and read one response (by
    content-length, chunked to its end, or until the server closes). Status 0: the server
    closed the connection without answering."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            head_end = received.find(b"\r\n\r\n")
            if head_end >= 0:
                head = received[:head_end].decode("latin-1").lower()
                length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")
                               if line.startswith("content-length:")), None)
                body = received[head_end + 4:]
                if length is not None and len(body) >= length:
                    break
                if "transfer-encoding: chunked" in head and body.endswith(b"0\r\n\r\n"):
                    break
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return Reply(status, headers, body, received)


def raw_request(method: str, target: str, headers: list[tuple[str | bytes, str | bytes]], body: bytes = b"",
                host: str | bytes | None = "proxy") -> bytes:
    """A request written exactly as given: request line, headers in order (``host`` first
    unless ``None``), ``content-length`` for a body, ``connection: close``."""
    def b(x):
        return x if isinstance(x, bytes) else x.encode()

    lines = [b(f"{method} {target} HTTP/1.1")]
    if host is not None:
        lines.append(b"host: " + b(host))
    lines += [b(name) + b": " + b(value) for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(b"content-length: " + str(len(body)).encode())
    lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


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


# -- Redis ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_redis():
    """A redis-server of this module's own: its dump holds nothing but this module's traffic."""
    if REDIS_BIN is None:
        pytest.skip("redis-server not installed")
    server = RedisProc()
    server.start()
    yield server
    server.close()


def redis_dump(url: str) -> dict[bytes, object]:
    """Every key of a Redis and its value, read by type (strings, hashes, sorted sets with
    scores, lists, sets, streams), plus the ``DUMP`` serialisation of each key."""
    from redis import Redis

    client = Redis.from_url(url)
    out: dict[bytes, object] = {}
    try:
        for key in client.keys("*"):
            kind = client.type(key).decode()
            if kind == "string":
                value: object = client.get(key)
            elif kind == "hash":
                value = client.hgetall(key)
            elif kind == "zset":
                value = client.zrange(key, 0, -1, withscores=True)
            elif kind == "list":
                value = client.lrange(key, 0, -1)
            elif kind == "set":
                value = client.smembers(key)
            elif kind == "stream":
                value = client.xrange(key)
            else:
                value = kind
            out[key] = (value, client.dump(key))
    finally:
        client.close()
    return out
