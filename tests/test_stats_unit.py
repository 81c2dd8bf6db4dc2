"""Statistics records: what one request adds, and how a batch renders."""

from __future__ import annotations

from headroom.outcome import RequestOutcome
from headroom.proxy.stats import StatsBuffer, delta_of, detailed
from headroom.state.store import StatsSnapshot


def outcome(**fields) -> RequestOutcome:
    base = dict(request_id="r", timestamp=1.0, provider="anthropic", path="/v1/messages", model="claude-x",
                status=200, tokens_before=100, tokens_after=40, latency_ms=12.0, overhead_ms=0.5)
    return RequestOutcome(**{**base, **fields})


def test_rejected_model_names_do_not_get_their_own_figures():
    assert "model:claude-x:requests" in delta_of(outcome()).counters
    junk = delta_of(outcome(model="x" * 500, status=404)).counters
    assert "model:other:requests" in junk and not any("xxxx" in name for name in junk)
    assert "model:a_b:requests" in delta_of(outcome(model="a:b")).counters  # ':' is the separator


def test_buffer_merges_and_renders():
    buffer = StatsBuffer()
    for i in range(3):
        buffer.add(delta_of(outcome(request_id=f"r{i}", transforms=["json:table", "fit:drop_turns=2"])))
    buffer.add(delta_of(outcome(request_id="e", status=502, error="http_502", tokens_before=0, tokens_after=0)))
    delta = buffer.take()
    assert buffer.take() is None
    snapshot = StatsSnapshot(counters=delta.counters, samples=delta.samples, recent=list(reversed(delta.recent)))
    stats = detailed(snapshot)
    assert stats["total_requests"] == 4 and stats["tokens_saved"] == 180 and stats["savings_percent"] == 60.0
    assert stats["requests_by_status"] == {"200": 3, "502": 1} and stats["errors"] == {"http_502": 1}
    assert stats["transforms"] == {"json:table": 3, "fit:drop_turns": 3}
    assert stats["models"]["claude-x"]["requests"] == 3 and stats["models"]["other"]["errors"] == 1
    assert stats["latency_ms"]["samples"] == 4 and stats["recent_requests"][0]["request_id"] == "e"


def test_recording_in_place_adds_what_deltas_add_and_keeps_the_latest_entries():
    """The proxy records each finished request straight into its buffer (no delta of its own,
    entries encoded when taken): the same totals, samples and recent entries as adding deltas."""
    from headroom.state.keys import STATS_RECENT_LIMIT

    outcomes = [outcome(request_id=f"r{i}", status=(200, 502)[i % 2], error=(None, "http_502")[i % 2],
                        cache="miss", cost_usd=0.01, usd_saved=0.002, caller="abc", cache_read_tokens=i,
                        input_tokens=10, ttfb_ms=None if i % 3 else 3.0, transforms=["json:table"] * (i % 2))
                for i in range(STATS_RECENT_LIMIT + 7)]
    recorded, added = StatsBuffer(), StatsBuffer()
    for o in outcomes:
        recorded.record(o)
        added.add(delta_of(o))
    mine, theirs = recorded.take(), added.take()
    assert mine.counters == theirs.counters and mine.samples == theirs.samples
    assert mine.recent == theirs.recent and len(mine.recent) == STATS_RECENT_LIMIT
    assert b'"request_id":"r56"' in mine.recent[-1] and b'"request_id":"r7"' in mine.recent[0]
    assert recorded.take() is None
