"""Fixtures for the hardening tests: proof that the proxy's worker survived an attack (same
process, still answering). Requests and native-error checks are in :mod:`testkit.llm_requests`
and :mod:`testkit.native_errors`."""

from __future__ import annotations

import psutil
import pytest

from testkit.llm_requests import ANTHROPIC_HEADERS, GOOD, HTTP, OPENAI_HEADERS


def worker_pids(proxy) -> set[int]:
    """The proxy's processes: the CLI's own (which serves alone with one worker) and any below
    it (Sanic's workers with several). A crash or a restart changes the set."""
    main = psutil.Process(proxy.proc.pid)
    return {main.pid} | {p.pid for p in main.children(recursive=True)}


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
