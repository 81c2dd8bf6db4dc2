"""Global statistics storage: every worker adds to the same totals, series stay bounded."""

from __future__ import annotations

import asyncio

from headroom.state.keys import STATS_RECENT_LIMIT, STATS_SAMPLE_LIMIT
from headroom.state.store import StatsDelta


def delta(i: int) -> StatsDelta:
    return StatsDelta(
        counters={"requests": 1, "status:200": 1, "cost_usd": 0.0015},
        samples={"latency_ms": [float(i)], "overhead_ms": [0.25]},
        recent=[f'{{"request_id":"r{i}"}}'.encode()],
    )


async def test_counters_add_up_from_concurrent_writers(make_store):
    first, second = await make_store(), await make_store()  # two workers, one backend (or one each in memory)
    shared = first is not second and type(first).__name__ == "RedisStore"
    await asyncio.gather(*(store.stats_record(delta(i)) for i in range(40) for store in (first, second)))
    snap = await first.stats_read(("latency_ms", "overhead_ms", "missing"))
    expected = 80 if shared else 40
    assert snap.counters["requests"] == expected and snap.counters["status:200"] == expected
    assert abs(snap.counters["cost_usd"] - 0.0015 * expected) < 1e-9
    assert len(snap.samples["latency_ms"]) == expected
    assert snap.samples["missing"] == []
    assert snap.recent[0].startswith(b'{"request_id":"r')


async def test_series_and_recent_list_are_bounded(make_store):
    store = await make_store()
    for i in range(STATS_RECENT_LIMIT + 5):
        await store.stats_record(delta(i))
    snap = await store.stats_read(("latency_ms",))
    assert len(snap.recent) == STATS_RECENT_LIMIT
    assert snap.recent[0] == f'{{"request_id":"r{STATS_RECENT_LIMIT + 4}"}}'.encode()  # newest first
    assert len(snap.samples["latency_ms"]) <= STATS_SAMPLE_LIMIT


async def test_a_batch_adds_up_like_its_parts(make_store):
    store = await make_store()
    batch = StatsDelta(counters={"requests": 3}, samples={"latency_ms": [1.0, 2.0, 3.0]},
                       recent=[b'{"request_id":"a"}', b'{"request_id":"b"}'])
    await store.stats_record(batch)
    snap = await store.stats_read(("latency_ms",))
    assert snap.counters["requests"] == 3
    assert snap.samples["latency_ms"] == [3.0, 2.0, 1.0]  # newest first
    assert snap.recent == [b'{"request_id":"b"}', b'{"request_id":"a"}']
