"""HTTP written byte for byte over a socket, for the tests that attack the proxy with what no
HTTP client would send (bad heads, odd request targets, smuggling attempts)."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int  # 0: the server closed the connection without answering
    headers: dict[str, str]
    body: bytes
    raw: bytes = b""

    def json(self):
        return json.loads(self.body)


def send_raw(url: str, data: bytes, timeout: float = 10.0) -> Reply:
    """Write ``data`` as is on a fresh connection and read one response (by content-length,
    chunked to its end, or until the server closes)."""
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
                host: str | bytes | None = "proxy", close: bool = True) -> bytes:
    """A request written exactly as given: request line, headers in order (``host`` first
    unless ``None``), ``content-length`` for a body or a POST/PUT/PATCH, and ``connection:
    close`` unless ``close`` is False (tests that count header fields)."""
    def b(x):
        return x if isinstance(x, bytes) else x.encode()

    lines = [b(f"{method} {target} HTTP/1.1")]
    if host is not None:
        lines.append(b"host: " + b(host))
    lines += [b(name) + b": " + b(value) for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(b"content-length: " + str(len(body)).encode())
    if close:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@dataclass
class Conversation:
    """Everything a server wrote on one connection, split into responses."""

    replies: list[Reply]
    closed: bool  # the server closed the connection (EOF or reset) before the timeout
    raw: bytes = b""

    @property
    def statuses(self) -> list[int]:
        return [reply.status for reply in self.replies]


def converse(url: str, data: bytes, timeout: float = 5.0) -> Conversation:
    """Write ``data`` in one ``sendall`` on a fresh connection and read until the server closes
    it, or until ``timeout`` seconds have passed in all (then ``closed`` is False: the server
    kept the connection open). For smuggling tests: every response the bytes provoked, in order,
    and whether the connection really ended."""
    parts = urlsplit(url)
    received, closed = b"", False
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(data)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:  # a reset: the server closed with unread bytes pending
                closed = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
    return Conversation(split_responses(received), closed, received)


def split_responses(data: bytes) -> list[Reply]:
    """Consecutive HTTP/1.1 responses, each delimited by its content-length or chunked framing
    (a response with neither runs to the end of ``data``)."""
    replies = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1]) if lines[0].startswith("HTTP/") else 0
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if "content-length" in headers:
            length = int(headers["content-length"])
            body, data = rest[:length], rest[length:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0] or b"0", 16)
                if size == 0:
                    data = rest.partition(b"\r\n")[2]
                    break
                body, rest = body + rest[:size], rest[size + 2:]
        else:
            body, data = rest, b""
        replies.append(Reply(status, headers, body, head + sep + body))
    return replies
