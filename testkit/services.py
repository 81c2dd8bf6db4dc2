"""Real processes for tests and benchmarks, each on a free loopback port.

- :func:`start_mock` — the mock upstream (:mod:`testkit.mock_upstream`), the only fake.
- :func:`start_proxy` — ``headroom proxy`` launched through the real CLI, exactly as a user would.
- :class:`RedisProc` — a ``redis-server`` of the caller's own, started by the product's own
  launcher (:func:`headroom.workers.redis_server.redis_spec`), restartable in place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from headroom.workers.redis_server import redis_spec
from headroom.workers.supervisor import SupervisedChild
from testkit import ROOT, processes
from testkit.ports import free_port

REDIS_BIN = shutil.which("redis-server")


def process_gone(pid: int) -> bool:
    """Whether a process has exited (gone, or a zombie nobody has reaped yet)."""
    return not processes.alive(pid)


def wait_until_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    """Poll ``url`` until it answers 200; fail with the process's log if it exits or times out."""
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


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the mock upstream --------------------------------------------------------------------


@dataclass
class Mock:
    """Handle on a running mock upstream: its URL and its recording of requests.

    One kept-alive client for every call: a new connection each time costs ~30 ms, which
    tests that reset the recording hundreds of times would feel."""

    url: str
    proc: subprocess.Popen | None = None

    @property
    def authority(self) -> str:
        """``host:port``, as the upstream sees it in ``Host``."""
        return self.url.removeprefix("http://")

    @property
    def _http(self) -> httpx.Client:
        client = self.__dict__.get("_client")
        if client is None:
            client = self.__dict__["_client"] = httpx.Client(timeout=10)
        return client

    def reset(self) -> None:
        self._http.post(f"{self.url}/_mock/reset").raise_for_status()

    def requests(self) -> list[dict]:
        return self._http.get(f"{self.url}/_mock/requests").json()

    def last(self) -> dict:
        return self.requests()[-1]

    def last_body(self) -> bytes:
        """The exact bytes the upstream received (recorded as latin-1 text)."""
        return self.last()["body"].encode("latin-1")

    def stats(self) -> dict:
        return self._http.get(f"{self.url}/_mock/stats").json()


def start_mock(log: Path, port: int | None = None) -> Mock:
    port = port or free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "testkit.mock_upstream", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/_mock/stats", proc, log)
    except Exception:
        stop(proc)
        raise
    return Mock(f"http://127.0.0.1:{port}", proc)


# -- the proxy ----------------------------------------------------------------------------


@dataclass
class Proxy:
    url: str
    proc: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text()


def proxy_command(port: int, upstream: str, *flags: str) -> list[str]:
    return [sys.executable, "-m", "headroom", "proxy", "--host", "127.0.0.1", "--port", str(port),
            "--anthropic-api-url", upstream, "--openai-api-url", upstream, "--gemini-api-url", upstream, *flags]


def start_proxy(log: Path, upstream: str, *flags: str, env: dict | None = None, timeout: float = 20.0) -> Proxy:
    """``headroom proxy`` on a free port, both providers pointed at ``upstream``; ready once
    ``/health`` answers."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(proxy_command(port, upstream, *flags), stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, cwd=ROOT)
    proxy = Proxy(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_until_ready(f"{proxy.url}/health", proc, log, timeout)
    except Exception:
        stop(proc)
        raise
    return proxy


# -- Redis --------------------------------------------------------------------------------


class RedisProc:
    """A ``redis-server`` on 127.0.0.1:port and a Unix socket, never the system one;
    :meth:`kill` and :meth:`start` again keep the same port and socket."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="hr-test-redis-", dir="/tmp"))  # short: socket paths
        self.sock = str(self.dir / "redis.sock")
        self._child: SupervisedChild | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.sock}"

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    def start(self, timeout: float = 5.0) -> None:
        spec = redis_spec(self.dir, port=self.port, unix_socket=self.sock)
        self._child = SupervisedChild(spec)
        self._child.start()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self._child is not None:
            self._child.kill()
            self._child.stop()
        self._child = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
