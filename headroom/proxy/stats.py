"""Per-process request statistics behind ``/health`` and ``/stats``.

Latencies are kept in bounded windows (the most recent samples), so memory stays flat
however long the proxy runs; percentiles are computed only when someone asks.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from headroom.outcome import RequestOutcome


@dataclass
class LatencyWindow:
    """The most recent ``size`` latency samples in milliseconds."""

    size: int = 10_000
    samples: deque = field(default_factory=deque)

    def add(self, ms: float) -> None:
        if len(self.samples) >= self.size:
            self.samples.popleft()
        self.samples.append(ms)

    def percentiles(self) -> dict[str, float | None]:
        ordered = sorted(self.samples)
        if not ordered:
            return {"p50": None, "p90": None, "p99": None, "samples": 0}

        def pick(q: float) -> float:
            index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
            return round(ordered[index], 3)

        return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "samples": len(ordered)}


RECENT_LIMIT = 50
MODEL_LIMIT = 100


def recent_entry(outcome: RequestOutcome) -> dict:
    """A line of the recent-requests list: figures only, never content or keys."""
    return {
        "request_id": outcome.request_id,
        "timestamp": round(outcome.timestamp, 3),
        "provider": outcome.provider,
        "model": outcome.model,
        "path": outcome.path,
        "stream": outcome.stream,
        "status": outcome.status,
        "tokens_saved": outcome.tokens_saved,
        "latency_ms": round(outcome.latency_ms, 3),
        "overhead_ms": round(outcome.overhead_ms, 3),
        "error": outcome.error,
    }


@dataclass
class ProxyStats:
    total_requests: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    by_provider: Counter = field(default_factory=Counter)
    by_status: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    latency: LatencyWindow = field(default_factory=LatencyWindow)
    overhead: LatencyWindow = field(default_factory=LatencyWindow)
    by_model: dict = field(default_factory=dict)  # model -> figures, bounded by MODEL_LIMIT
    by_transform: Counter = field(default_factory=Counter)
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_LIMIT))

    def record(self, outcome: RequestOutcome) -> None:
        self.total_requests += 1
        self.tokens_before += outcome.tokens_before
        self.tokens_after += outcome.tokens_after
        self.bytes_in += outcome.bytes_in
        self.bytes_out += outcome.bytes_out
        self.by_provider[outcome.provider] += 1
        self.by_status[str(outcome.status)] += 1
        if outcome.error:
            self.errors[outcome.error] += 1
        self.latency.add(outcome.latency_ms)
        self.overhead.add(outcome.overhead_ms)
        self._per_model(outcome)
        for transform in outcome.transforms:
            self.by_transform[transform.split(":", 1)[0]] += 1
        self.recent.append(recent_entry(outcome))

    def _per_model(self, outcome: RequestOutcome) -> None:
        name = outcome.model or "none"
        if name not in self.by_model and len(self.by_model) >= MODEL_LIMIT:
            name = "other"  # model names come from clients: keep the table bounded
        figures = self.by_model.setdefault(name, Counter())
        figures["requests"] += 1
        figures["tokens_before"] += outcome.tokens_before
        figures["tokens_after"] += outcome.tokens_after
        figures["input_tokens"] += outcome.input_tokens
        figures["output_tokens"] += outcome.output_tokens
        figures["cache_read_tokens"] += outcome.cache_read_tokens
        figures["cache_write_tokens"] += outcome.cache_write_tokens
        if outcome.status >= 400:
            figures["errors"] += 1

    @property
    def tokens_saved(self) -> int:
        return self.tokens_before - self.tokens_after

    @property
    def savings_percent(self) -> float:
        if not self.tokens_before:
            return 0.0
        return round(100.0 * self.tokens_saved / self.tokens_before, 1)

    def health(self) -> dict:
        return {
            "total_requests": self.total_requests,
            "tokens_saved": self.tokens_saved,
            "savings_percent": self.savings_percent,
        }

    def detailed(self) -> dict:
        return {
            "scope": "process",
            **self.health(),
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "requests_by_provider": dict(self.by_provider),
            "requests_by_status": dict(self.by_status),
            "errors": dict(self.errors),
            "errors_total": sum(self.errors.values()),
            "latency_ms": self.latency.percentiles(),
            "added_latency_ms": self.overhead.percentiles(),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "models": {name: dict(figures) for name, figures in self.by_model.items()},
            "transforms": dict(self.by_transform),
            "recent_requests": list(reversed(self.recent)),
        }
