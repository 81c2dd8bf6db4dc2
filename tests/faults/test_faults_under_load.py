"""Faults under sustained load, not a handful of requests: Redis killed and restarted, the
model server killed, an HTTP worker SIGKILLed — while client threads keep sending.

What must hold: with Redis or the model server gone every request still succeeds (fail open)
and the part comes back; a killed worker is replaced, and the only requests lost are those it
was serving at that moment.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field

import httpx

from testkit import processes
from testkit.waiting import wait_for

BODY = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "load"}]}


@dataclass
class Load:
    """Client threads sending small requests until stopped (bounded by count and time)."""

    url: str
    threads: int = 4
    max_requests: int = 20_000
    max_seconds: float = 60.0
    body: dict = field(default_factory=lambda: BODY)
    results: list[tuple[float, int | str]] = field(default_factory=list)  # (time, status or error)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)]

    def _run(self, index: int) -> None:
        deadline = time.monotonic() + self.max_seconds
        headers = {"x-api-key": f"sk-ant-load-{index}", "anthropic-version": "2023-06-01"}
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set() and time.monotonic() < deadline and len(self.results) < self.max_requests:
                try:
                    outcome: int | str = client.post(f"{self.url}/v1/messages", json=self.body,
                                                     headers=headers).status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with self._lock:
                    self.results.append((time.monotonic(), outcome))

    def __enter__(self) -> Load:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(40)

    def count(self) -> int:
        return len(self.results)

    def wait_for_more(self, n: int, timeout: float = 30) -> None:
        target = self.count() + n
        wait_for(lambda: self.count() >= target, timeout=timeout, what=f"{n} more requests")

    def failures(self) -> list[tuple[float, int | str]]:
        return [r for r in self.results if r[1] != 200]


def test_redis_killed_and_restarted_under_load_fails_nothing_and_limits_resume(start_proxy, own_redis, fresh_mock):
    proxy = start_proxy("--workers", "2", "--redis-url", own_redis.url, "--rpm", "100000", "--redis-timeout", "0.5")
    with Load(proxy.url) as load:
        load.wait_for_more(100)
        own_redis.kill()
        load.wait_for_more(150)  # served while Redis is away: unguarded, fail open
        own_redis.start()
        load.wait_for_more(150)
    assert load.count() >= 400 and load.failures() == [], load.failures()[:5]

    # Limits resume on the restarted Redis: a fresh key with a tight limit meets it again.
    tight = start_proxy("--redis-url", own_redis.url, "--rpm", "3", "--no-cache")
    wait_for(lambda: httpx.get(f"{tight.url}/health", timeout=5).json()["status"] == "healthy", timeout=10,
             what="Redis reachable")
    statuses = [httpx.post(f"{tight.url}/v1/messages", headers={"x-api-key": "sk-ant-after"}, timeout=10,
                           json={**BODY, "messages": [{"role": "user", "content": f"after {i}"}]}).status_code
                for i in range(5)]
    assert statuses == [200, 200, 200, 429, 429]


def test_the_model_server_killed_under_load_fails_nothing_and_comes_back(start_proxy, fresh_mock, lingua_model):
    prose = " ".join(f"Paragraph {i} explains how the retention policy keeps audit records for several years "
                     f"and why operators rotate the keys every quarter." for i in range(60))
    body = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [
        {"role": "user", "content": "what is the retention policy?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "WebFetch", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": prose}]}]}
    proxy = start_proxy("--llmlingua", "--llmlingua-model", str(lingua_model))
    wait_for(lambda: httpx.get(f"{proxy.url}/health", timeout=5).json().get("llmlingua") == "ready", timeout=90,
             what="the model to load")
    server = httpx.get(f"{proxy.url}/stats", timeout=5).json()["llmlingua"]["pid"]
    with Load(proxy.url, threads=3, body=body) as load:
        load.wait_for_more(30)
        os.kill(server, signal.SIGKILL)
        load.wait_for_more(60)  # served while the model server is gone: uncompressed
        wait_for(lambda: httpx.get(f"{proxy.url}/health", timeout=5).json().get("llmlingua") == "ready",
                 timeout=60, what="the model server to be back")
        load.wait_for_more(20)
    assert load.failures() == [], load.failures()[:5]
    assert httpx.get(f"{proxy.url}/stats", timeout=5).json()["llmlingua"]["pid"] != server


def _workers(proxy) -> set[int]:
    """The proxy's HTTP workers: announced, running, and its children."""
    return processes.live_workers(proxy.output()) & set(processes.find(parent=proxy.proc.pid))


def test_a_worker_killed_under_load_is_replaced_and_loses_only_what_it_was_serving(start_proxy, fresh_mock):
    proxy = start_proxy("--workers", "2")
    wait_for(lambda: len(_workers(proxy)) == 2, timeout=20, what="two workers")
    threads = 4
    with Load(proxy.url, threads=threads) as load:
        load.wait_for_more(100)
        victim = max(_workers(proxy))
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(_workers(proxy) - {victim}) == 2, timeout=20, what="a replacement worker")
        load.wait_for_more(200)
    failures = load.failures()
    # Each client thread had at most one request in flight on the killed worker.
    assert len(failures) <= threads, failures
    assert all(at >= killed_at for at, _ in failures)
    assert load.count() - len(failures) >= 300
    assert "died with exit code" in proxy.output()
