"""Request statistics behind ``/health`` and ``/stats``, global across workers and instances.

Every finished request becomes a :class:`~headroom.state.store.StatsDelta` (counter
increments, latency samples, a recent-requests entry). Each worker merges its deltas in a
:class:`StatsBuffer` and adds them to the shared totals in one store call every
``FLUSH_INTERVAL_S`` — not one call per request, which would cost a Redis round trip of CPU
on every request. ``/stats`` flushes its own worker's buffer, reads the totals back and
renders figures; other workers' last fraction of a second shows up at their next flush.
Latency series are bounded (the most recent samples), so memory stays flat.

Retrievals are counted where they are answered (``retrievals:{tool}:{outcome}``,
``retrieved_tokens``, ``backoffs:{tool}``: :mod:`headroom.transforms.retrieval_policy` adds
them to the totals itself), and the back-offs in force come from the store
(:meth:`~headroom.state.store.Store.tool_backoffs`).
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timezone

import ujson

from headroom.outcome import RequestOutcome
from headroom.state.keys import STATS_RECENT_LIMIT, STATS_SAMPLE_LIMIT
from headroom.state.store import StatsDelta, StatsSnapshot
from headroom.state.tool_use import Backoff

#: Latency series kept in the store, one bounded list each.
SERIES = ("latency_ms", "overhead_ms", "ttfb_ms")
FLUSH_INTERVAL_S = 0.25


def _model_name(outcome: RequestOutcome) -> str:
    """Model names come from clients: only names the upstream accepted get their own figures
    (so junk names cannot grow the totals without bound), kept short and ':'-free."""
    if not outcome.model:
        return "none"
    if not 200 <= outcome.status < 300:
        return "other"
    return outcome.model[:64].replace(":", "_")


_NAMES: dict[tuple[str, str, int], tuple[str, ...]] = {}
_NAMES_LIMIT = 4096


def _counter_names(provider: str, model: str, status: int) -> tuple[str, ...]:
    """The counters every request adds to, in :meth:`StatsBuffer.record`'s order; kept per
    (provider, model, status) rather than formatted again for every request."""
    key = (provider, model, status)
    names = _NAMES.get(key)
    if names is None:
        if len(_NAMES) >= _NAMES_LIMIT:
            _NAMES.clear()
        names = _NAMES[key] = (
            "requests", f"provider:{provider}", f"status:{status}", "tokens_before", "tokens_after", "bytes_in",
            "bytes_out", *(f"model:{model}:{figure}" for figure in (
                "requests", "tokens_before", "tokens_after", "input_tokens", "output_tokens", "cache_read_tokens",
                "cache_write_tokens")),
        )
    return names


def delta_of(outcome: RequestOutcome) -> StatsDelta:
    """What one request adds to the global statistics."""
    buffer = StatsBuffer()
    buffer.record(outcome)
    delta = buffer.take()
    assert delta is not None  # a request always counts
    return delta


class StatsBuffer:
    """A worker's statistics not yet added to the shared totals (bounded like the store's).

    :meth:`record` adds a finished request in place, without building a delta of its own;
    the recent-requests entries are encoded when taken, and only the last
    ``STATS_RECENT_LIMIT`` of them (the store keeps no more). An outcome that carries the
    request's messages (``--log-messages``) is kept as its entry (:func:`recent_entry`, figures
    only) rather than whole.
    """

    def __init__(self) -> None:
        self.counters: dict[str, float] = {}
        self.samples: dict[str, list[float]] = {}
        self._recent: deque[RequestOutcome | dict | bytes] = deque(maxlen=STATS_RECENT_LIMIT)

    @property
    def recent(self) -> list[bytes]:
        """The recent-requests entries waiting, oldest first, encoded."""
        return [_encoded(entry) for entry in self._recent]

    def record(self, outcome: RequestOutcome) -> None:
        """Add one finished request."""
        counters = self.counters
        get = counters.get
        provider, model = outcome.provider, _model_name(outcome)
        before, after = outcome.tokens_before, outcome.tokens_after
        input_tokens, cache_read, cache_write = (outcome.input_tokens, outcome.cache_read_tokens,
                                                 outcome.cache_write_tokens)
        amounts = (1, 1, 1, before, after, outcome.bytes_in, outcome.bytes_out, 1, before, after, input_tokens,
                   outcome.output_tokens, cache_read, cache_write)
        for name, amount in zip(_counter_names(provider, model, outcome.status), amounts):
            counters[name] = get(name, 0) + amount
        # Prompt-cache read share: reads over every input token (uncached + read + written).
        all_input = input_tokens + cache_read + cache_write
        if all_input:
            self._add(f"prompt_cache:{provider}:input_tokens", all_input)
            self._add(f"prompt_cache:{provider}:read_tokens", cache_read)
        if outcome.upstream_calls > 1:  # the retrieval loop asked the upstream again (tool_loop)
            self._add("loop:continuations", outcome.upstream_calls - 1)
        if outcome.retrievals:
            self._add("loop:retrievals", outcome.retrievals)
        if outcome.prefix_changes:
            self._add("prefix_changes", outcome.prefix_changes)
            self._add(f"prefix_changes:{provider}", outcome.prefix_changes)
        if outcome.cost_usd or outcome.usd_saved:
            caller = outcome.caller or "none"
            for figure, usd in (("spent", outcome.cost_usd), ("saved", outcome.usd_saved)):
                if usd:
                    self._add(f"usd_{figure}", usd)
                    self._add(f"usd_provider:{provider}:{figure}", usd)
                    self._add(f"usd_caller:{caller}:{figure}", usd)
            if outcome.cost_usd:
                self._add("cost_usd", outcome.cost_usd)
                self._add(f"model:{model}:cost_usd", outcome.cost_usd)
            if outcome.usd_saved:
                self._add(f"model:{model}:usd_saved", outcome.usd_saved)
        if outcome.error:
            self._add(f"error:{outcome.error}", 1)
            self._add(f"model:{model}:errors", 1)
        if outcome.cache:
            self._add(f"cache:{outcome.cache}", 1)
        if outcome.limited:
            self._add(f"limited:{outcome.limited}", 1)
        if outcome.model_fallback:
            self._add(f"llmlingua_fallback:{outcome.model_fallback}", 1)
        for transform in outcome.transforms:
            self._add(f"transform:{transform.split('=', 1)[0]}", 1)  # "fit:drop_turns=2" counts as fit:drop_turns
        self._sample("latency_ms", outcome.latency_ms)
        self._sample("overhead_ms", outcome.overhead_ms)
        if outcome.ttfb_ms is not None:
            self._sample("ttfb_ms", outcome.ttfb_ms)
        self._recent.append(outcome if outcome.messages is None else recent_entry(outcome))

    def _add(self, name: str, amount: float) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount

    def _sample(self, name: str, value: float) -> None:
        series = self.samples.get(name)
        if series is None:
            series = self.samples[name] = []
        series.append(value)
        if len(series) >= 2 * STATS_SAMPLE_LIMIT:  # trimmed now and then, not on every sample
            del series[:-STATS_SAMPLE_LIMIT]

    def add(self, delta: StatsDelta) -> None:
        """Add a delta (one taken earlier and not stored, say)."""
        counters = self.counters
        for name, amount in delta.counters.items():
            counters[name] = counters.get(name, 0) + amount
        for name, values in delta.samples.items():
            series = self.samples.setdefault(name, [])
            series.extend(values)
            del series[:-STATS_SAMPLE_LIMIT]
        self._recent.extend(delta.recent)

    def take(self) -> StatsDelta | None:
        """Everything buffered, leaving the buffer empty (``None`` when there is nothing)."""
        if not self.counters:
            return None
        for series in self.samples.values():
            del series[:-STATS_SAMPLE_LIMIT]
        delta = StatsDelta(self.counters, self.samples, self.recent)
        self.counters, self.samples = {}, {}
        self._recent.clear()
        return delta


def _encoded(entry: RequestOutcome | dict | bytes) -> bytes:
    if isinstance(entry, bytes):
        return entry
    return ujson.dumps(entry if isinstance(entry, dict) else recent_entry(entry)).encode()


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
        "cache": outcome.cache,
        "tokens_saved": outcome.tokens_saved,
        "cost_usd": round(outcome.cost_usd, 6),
        "usd_saved": round(outcome.usd_saved, 6),
        "latency_ms": round(outcome.latency_ms, 3),
        "overhead_ms": round(outcome.overhead_ms, 3),
        "error": outcome.error,
    }


def percentiles(samples: list[float]) -> dict[str, float | None]:
    ordered = sorted(samples)
    if not ordered:
        return {"p50": None, "p90": None, "p99": None, "samples": 0}

    def pick(q: float) -> float:
        index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
        return round(ordered[index], 3)

    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "samples": len(ordered)}


def _prefixed(counters: dict[str, float], prefix: str) -> dict[str, int | float]:
    return {name[len(prefix):]: _number(value) for name, value in counters.items() if name.startswith(prefix)}


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 6)


def health_of(counters: dict[str, float]) -> dict:
    before, after = int(counters.get("tokens_before", 0)), int(counters.get("tokens_after", 0))
    saved = before - after
    return {
        "total_requests": int(counters.get("requests", 0)),
        "tokens_saved": saved,
        "savings_percent": round(100.0 * saved / before, 1) if before else 0.0,
    }


def _usd_by(counters: dict[str, float], prefix: str) -> dict[str, dict[str, float]]:
    """``{prefix}{key}:spent|saved`` counters as ``{key: {"spent": …, "saved": …}}``."""
    table: dict[str, dict[str, float]] = {}
    for name, value in counters.items():
        if name.startswith(prefix):
            key, _, figure = name[len(prefix):].rpartition(":")
            table.setdefault(key, {"spent": 0.0, "saved": 0.0})[figure] = round(value, 6)
    return table


def usd_of(counters: dict[str, float]) -> dict:
    """Dollars spent (the upstream's usage) and saved (cache-aware estimate), in total and
    by provider and caller hash (by model: ``models[m].cost_usd`` / ``usd_saved``)."""
    return {
        "spent": round(counters.get("usd_spent", 0.0), 6),
        "saved": round(counters.get("usd_saved", 0.0), 6),
        "by_provider": _usd_by(counters, "usd_provider:"),
        "by_caller": _usd_by(counters, "usd_caller:"),
    }


def prompt_cache_of(counters: dict[str, float]) -> dict[str, dict]:
    """Per provider: input tokens read from the provider's prompt cache, all input tokens
    (uncached, read and written, as the upstream reported them) and the read share."""
    table: dict[str, dict] = {}
    for name, value in _prefixed(counters, "prompt_cache:").items():
        provider, _, figure = name.rpartition(":")
        table.setdefault(provider, {"read_tokens": 0, "input_tokens": 0})[figure] = int(value)
    for row in table.values():
        row["read_share"] = round(row["read_tokens"] / row["input_tokens"], 4) if row["input_tokens"] else 0.0
    return table


def retrievals_of(counters: dict[str, float]) -> dict:
    """Retrievals answered, by the tool whose output was retrieved and outcome (ok, miss,
    error), and the tokens they gave back."""
    by_tool: dict[str, dict[str, int]] = {}
    for name, value in _prefixed(counters, "retrievals:").items():
        tool, _, outcome = name.rpartition(":")
        by_tool.setdefault(tool, {"ok": 0, "miss": 0, "error": 0})[outcome] = int(value)
    by_outcome = {outcome: sum(row.get(outcome, 0) for row in by_tool.values()) for outcome in ("ok", "miss", "error")}
    return {"total": sum(by_outcome.values()), "by_outcome": by_outcome, "by_tool": by_tool,
            "retrieved_tokens": int(counters.get("retrieved_tokens", 0))}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def backed_off_of(counters: dict[str, float], backoffs: list[Backoff]) -> dict:
    """The tools backed off now (per caller hash, until when) and how often each has been."""
    return {
        "now": [{"tool": b.tool, "caller": b.caller, "until": _iso(b.until)} for b in backoffs],
        "started": _prefixed(counters, "backoffs:"),
    }


def detailed(snapshot: StatsSnapshot, backoffs: list[Backoff] | None = None) -> dict:
    counters = snapshot.counters
    models: dict[str, dict] = {}
    for name, value in _prefixed(counters, "model:").items():
        model, _, figure = name.rpartition(":")
        models.setdefault(model, {})[figure] = value
    errors = _prefixed(counters, "error:")
    return {
        "scope": "global",
        **health_of(counters),
        "tokens_before": int(counters.get("tokens_before", 0)),
        "tokens_after": int(counters.get("tokens_after", 0)),
        "cost_usd": round(counters.get("cost_usd", 0.0), 6),
        "usd": usd_of(counters),
        "requests_by_provider": _prefixed(counters, "provider:"),
        "requests_by_status": _prefixed(counters, "status:"),
        "errors": errors,
        "errors_total": sum(errors.values()),
        "cache": _prefixed(counters, "cache:"),
        "rate_limited": _prefixed(counters, "limited:"),
        "latency_ms": percentiles(snapshot.samples.get("latency_ms", [])),
        "added_latency_ms": percentiles(snapshot.samples.get("overhead_ms", [])),
        "ttfb_ms": percentiles(snapshot.samples.get("ttfb_ms", [])),
        "bytes_in": int(counters.get("bytes_in", 0)),
        "bytes_out": int(counters.get("bytes_out", 0)),
        "models": models,
        "transforms": _prefixed(counters, "transform:"),
        "llmlingua_fallbacks": _prefixed(counters, "llmlingua_fallback:"),
        "prompt_cache": prompt_cache_of(counters),
        # Earlier tool outputs re-sent with other bytes (a cache break Headroom caused): should stay 0.
        "prefix_changes": int(counters.get("prefix_changes", 0)),
        "prefix_changes_by_provider": _prefixed(counters, "prefix_changes:"),
        # What compression left out and the model fetched back; savings net of it.
        "retrievals": retrievals_of(counters),
        "tokens_saved_net": int(counters.get("tokens_before", 0) - counters.get("tokens_after", 0)
                                - counters.get("retrieved_tokens", 0)),
        "backed_off": backed_off_of(counters, backoffs or []),
        # The retrieval loop: calls to headroom_retrieve the proxy answered, and the extra upstream
        # calls they took (their tokens are in the usage and cost figures above).
        "retrieval_loop": {"retrievals": int(counters.get("loop:retrievals", 0)),
                           "continuations": int(counters.get("loop:continuations", 0))},
        "recent_requests": [ujson.loads(entry) for entry in snapshot.recent],
    }
