"""Locust load test: both providers through the Headroom proxy, streaming and not.

Locust is an optional extra (``pip install -e '.[load]'``); nothing else in
the project imports this file.  Always run it against the mock upstream, never
the real APIs, and always bounded -- ``-u`` caps concurrent users and
``--run-time`` caps duration (a headless run without it would go on forever,
so ``HARD_LIMIT_S`` below stops it regardless)::

    python -m testkit.mock_upstream --port 9100 &
    python -m headroom proxy --port 8787 \\
        --anthropic-api-url http://127.0.0.1:9100 --openai-api-url http://127.0.0.1:9100 &
    locust -f load_tests/locustfile.py --headless -u 50 -r 10 --run-time 60s \\
        --stop-timeout 10 --host http://127.0.0.1:8787

Streams ask the mock for ``STREAM_EVENTS`` deltas ``STREAM_GAP_MS`` apart to
look like token pacing.  Locust times a ``stream=True`` request only up to the
response headers, so each stream also reports its full duration as a separate
``SSE`` entry in the stats.
"""

from __future__ import annotations

import os
import time
from typing import ClassVar

import gevent
from locust import HttpUser, between, events, task
from locust.runners import WorkerRunner

HARD_LIMIT_S = float(os.environ.get("HEADROOM_LOCUST_HARD_LIMIT_S", "600"))
STREAM_EVENTS = "20"
STREAM_GAP_MS = "5"
PROMPT = "Summarise the benefits of a token-saving proxy in one sentence."


@events.test_start.add_listener
def _hard_stop(environment, **_kwargs) -> None:
    """Safety net for a forgotten ``--run-time``: quit after HARD_LIMIT_S."""
    if not isinstance(environment.runner, WorkerRunner):
        gevent.spawn_later(HARD_LIMIT_S, environment.runner.quit)


class _ProxyUser(HttpUser):
    abstract = True
    wait_time = between(0.05, 0.2)
    path = ""
    headers: ClassVar[dict[str, str]] = {}
    last_line = b""  # what a complete stream ends with

    def body(self, stream: bool) -> dict:
        raise NotImplementedError

    @task(3)
    def complete(self) -> None:
        with self.client.post(self.path, json=self.body(False), headers=self.headers,
                              name=f"{self.path} (json)", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
            elif "mock reply" not in resp.text:
                resp.failure("unexpected body")

    @task(1)
    def stream(self) -> None:
        headers = {**self.headers, "x-mock-events": STREAM_EVENTS, "x-mock-stream-delay-ms": STREAM_GAP_MS}
        start = time.perf_counter()
        size, last, error = 0, b"", None
        with self.client.post(self.path, json=self.body(True), headers=headers, stream=True,
                              name=f"{self.path} (stream headers)", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return
            try:
                for line in resp.iter_lines():
                    size += len(line) + 1
                    if line:
                        last = line
            except Exception as exc:  # noqa: BLE001 - a broken stream is reported, the user lives on
                error = exc
            if error is None and self.last_line not in last:
                error = RuntimeError(f"stream ended early at {last[:80]!r}")
            # The headers entry stays a success; stream problems go on the SSE entry.
        self.environment.events.request.fire(
            request_type="SSE", name=f"{self.path} (full stream)",
            response_time=(time.perf_counter() - start) * 1000, response_length=size,
            exception=error, context={},
        )


class AnthropicUser(_ProxyUser):
    weight = 2
    path = "/v1/messages"
    headers: ClassVar[dict[str, str]] = {"x-api-key": "sk-ant-load", "anthropic-version": "2023-06-01"}
    last_line = b'"message_stop"'

    def body(self, stream: bool) -> dict:
        return {"model": "claude-sonnet-4-5", "max_tokens": 256, "stream": stream,
                "messages": [{"role": "user", "content": PROMPT}]}


class OpenAIUser(_ProxyUser):
    weight = 1
    path = "/v1/chat/completions"
    headers: ClassVar[dict[str, str]] = {"authorization": "Bearer sk-load"}
    last_line = b"[DONE]"

    def body(self, stream: bool) -> dict:
        body = {"model": "gpt-4o-mini", "stream": stream,
                "messages": [{"role": "user", "content": PROMPT}]}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body
