"""Helpers for the hardening tests: raw HTTP over a socket, native error checks, and proof
that the proxy's worker survived (same process, still answering)."""

from __future__ import annotations

import json

import httpx
import psutil
import pytest

from testkit import raw_http
from testkit.raw_http import Reply, send_raw  # noqa: F401 - the tests import them from here
from testkit.services import Mock

ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-hardening", "anthropic-version": "2023-06-01",
                     "content-type": "application/json"}
OPENAI_HEADERS = {"authorization": "Bearer sk-hardening", "content-type": "application/json"}
GOOD = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
#: One client for every test: making an httpx client (TLS context and all) costs more than a request.
HTTP = httpx.Client(timeout=30)


def raw_request(method: str, path: str, headers: list[tuple[bytes | str, bytes | str]], body: bytes = b"") -> bytes:
    """A request head written byte for byte as given (``host`` and ``content-length`` added,
    nothing else: these tests count header fields)."""
    return raw_http.raw_request(method, path, headers, body, close=False)


def assert_anthropic_error(status: int, body: bytes, expected_status: int, kind: str = "invalid_request_error"):
    assert status == expected_status, body
    parsed = json.loads(body)
    assert parsed["type"] == "error", parsed
    assert parsed["error"]["type"] == kind, parsed
    assert parsed["error"]["message"]
    return parsed["error"]["message"]


def assert_openai_error(status: int, body: bytes, expected_status: int):
    assert status == expected_status, body
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["message"] and error["type"] == "invalid_request_error"
    return error["message"]


@pytest.fixture
def upstream(mock) -> Mock:
    """The mock upstream, its recording cleared."""
    mock.reset()
    return mock


def worker_pids(proxy) -> set[int]:
    """The proxy's processes below the CLI's own (Sanic's workers)."""
    return {p.pid for p in psutil.Process(proxy.proc.pid).children(recursive=True)}


@pytest.fixture
def still_alive(proxy, mock):
    """After the test, the same worker processes answer a good request (no crash, no restart)."""
    before = worker_pids(proxy)
    assert before
    yield proxy
    for headers, path in ((ANTHROPIC_HEADERS, "/v1/messages"), (OPENAI_HEADERS, "/v1/chat/completions")):
        response = HTTP.post(f"{proxy.url}{path}", json=GOOD, headers=headers)
        assert response.status_code == 200, response.text
    assert worker_pids(proxy) == before
    assert proxy.proc.poll() is None
