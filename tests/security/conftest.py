"""Helpers for the security tests: raw HTTP over a socket, a listener standing in for an
attacker's host, request bodies that compression stores originals for, and a Redis dump."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field

import httpx
import pytest

from testkit.ports import free_port
from testkit.raw_http import Reply, raw_request, send_raw  # noqa: F401 - the tests import them from here
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
