"""HTTP written byte for byte over a socket, for the tests that attack the proxy with what no
HTTP client would send (bad heads, odd request targets, smuggling attempts)."""

from __future__ import annotations

import json
import socket
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
