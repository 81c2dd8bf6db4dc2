"""Shared fixtures: the mock upstream and real proxies, each a real process on a free port.

The mock upstream (``load_tests/mock_upstream.py``) is the only fake. Proxies are launched
through the real CLI (``python -m headroom proxy``), exactly as a user would start them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
_TIKTOKEN_DIR = ROOT / ".tiktoken"
if _TIKTOKEN_DIR.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_TIKTOKEN_DIR))


REDIS_BIN = shutil.which("redis-server")
REQUIRE_REDIS_ENV = "HEADROOM_REQUIRE_REDIS"  # set in CI: a missing binary fails instead of skipping


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{log.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Mock:
    """Handle on the running mock upstream: its URL and its recording of requests."""

    def __init__(self, url: str) -> None:
        self.url = url

    def reset(self) -> None:
        httpx.post(f"{self.url}/_mock/reset").raise_for_status()

    def requests(self) -> list[dict]:
        return httpx.get(f"{self.url}/_mock/requests").json()

    def last(self) -> dict:
        return self.requests()[-1]

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/_mock/stats").json()


@pytest.fixture(scope="session")
def mock(tmp_path_factory) -> Mock:
    port = free_port()
    log = tmp_path_factory.mktemp("mock") / "mock.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "load_tests" / "mock_upstream.py"), "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/_mock/stats", proc, log)
        yield Mock(f"http://127.0.0.1:{port}")
    finally:
        stop(proc)


class Proxy:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path) -> None:
        self.url = url
        self.proc = proc
        self.log = log

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture(scope="session")
def start_proxy(tmp_path_factory, mock):
    """Start ``headroom proxy`` with extra flags; every proxy is stopped at session end."""
    started: list[Proxy] = []

    def start(*flags: str, upstream: str | None = None, env: dict | None = None) -> Proxy:
        port = free_port()
        target = upstream or mock.url
        log = tmp_path_factory.mktemp("proxy") / "proxy.log"
        cmd = [
            sys.executable, "-m", "headroom", "proxy", "--host", "127.0.0.1", "--port", str(port),
            "--anthropic-api-url", target, "--openai-api-url", target, *flags,
        ]
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        proxy = Proxy(f"http://127.0.0.1:{port}", proc, log)
        started.append(proxy)
        wait_until_ready(f"{proxy.url}/health", proc, log)
        return proxy

    yield start
    for proxy in started:
        stop(proxy.proc)


@pytest.fixture(scope="session")
def proxy(start_proxy) -> Proxy:
    """The shared proxy for transparency tests: defaults, except that the response cache is off.

    Tests steer the mock with headers, which (rightly) are not part of the cache key; with
    the cache on, a later test could be answered from an earlier one's identical body.
    The cache has tests of its own.
    """
    return start_proxy("--no-cache")


@pytest.fixture
def fresh_mock(mock) -> Mock:
    mock.reset()
    return mock


class RedisProc:
    """A redis-server of the test session's own, on 127.0.0.1:port and a Unix socket;
    restartable in place (same port, same socket), never the system one."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="hr-test-redis-"))
        self.sock = str(self.dir / "redis.sock")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.sock}"

    def start(self, timeout: float = 5.0) -> None:
        assert REDIS_BIN is not None
        self.proc = subprocess.Popen(
            [REDIS_BIN, "--port", str(self.port), "--bind", "127.0.0.1", "--unixsocket", self.sock,
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _require_redis() -> None:
    if REDIS_BIN is None:
        if os.environ.get(REQUIRE_REDIS_ENV):
            pytest.fail(f"{REQUIRE_REDIS_ENV} is set but redis-server is not installed")
        pytest.skip("redis-server not installed")


def _running_redis():
    _require_redis()
    server = RedisProc()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_server():
    yield from _running_redis()


@pytest.fixture
def own_redis():
    """A redis-server for one test (to kill and restart without disturbing the others)."""
    yield from _running_redis()
