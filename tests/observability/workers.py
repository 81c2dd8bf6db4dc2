"""Code that runs in spawned processes: each stands in for one proxy worker.

Kept in an importable module because ``spawn`` starts a fresh interpreter that must
import the target by name.
"""

from __future__ import annotations

from typing import Any

from headroom.observability import metrics
from headroom.observability.request_log import RequestLog
from headroom.outcome import RequestOutcome


def outcome(n: int = 0, **fields: Any) -> RequestOutcome:
    """A plausible successful, compressed, streamed Anthropic request."""
    values: dict[str, Any] = dict(
        request_id=f"req-{n}", timestamp=1_700_000_000.0 + n, provider="anthropic", path="/v1/messages",
        model="claude-sonnet-4-5", stream=True, status=200, caller="c0ffee" * 4,
        tokens_before=1000, tokens_after=600, transforms=["dedupe"],
        input_tokens=600, output_tokens=40, cache_read_tokens=100, cache_write_tokens=20, cost_usd=0.0025,
        latency_ms=120.0, overhead_ms=1.5, ttfb_ms=30.0, cache="miss",
    )
    values.update(fields)
    return RequestOutcome(**values)


def observe_many(count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        metrics.observe(outcome(n))


def observe_then_wait(count: int, ready: Any, stop: Any) -> None:
    """Observe, say so, then hang until killed: a worker that dies with counts in its file."""
    observe_many(count)
    ready.set()
    stop.wait(30)


def set_budget(usd: float) -> None:
    metrics.set_budget_remaining(usd)


def write_lines(path: str, count: int, worker: int, message_bytes: int, go: Any) -> None:
    """Write ``count`` lines once ``go`` is set, so that all writers overlap in time."""
    log = RequestLog(path, log_messages=True)
    filler = "x" * message_bytes
    go.wait(30)
    for n in range(count):
        log.write(outcome(n, request_id=f"w{worker}-{n}", messages=[{"role": "user", "content": filler}]))
    log.close()
    assert log.failures == 0
