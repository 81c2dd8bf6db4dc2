"""Rate-limit buckets and budget reservations: the same tests for both stores."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import datetime, timezone

import pytest

from headroom.state.budget import period_bounds
from headroom.state.store import GuardRequest
from testkit.clock import FakeClock
from testkit.waiting import async_wait_for


def caller() -> str:
    return uuid.uuid4().hex


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


async def test_no_limits_is_allowed_without_state(make_store):
    store = await make_store()
    res = await store.guard(GuardRequest(caller(), tokens=10**6, cost_usd=100.0))
    assert res.allowed and res.limit is None and res.budget_key is None
    assert res.requests_remaining is None and res.tokens_remaining is None and res.budget_remaining_usd is None


async def test_burst_admits_capacity_then_refuses(make_store):
    clock = FakeClock()
    store = await make_store(time_source=clock)
    req = GuardRequest(caller(), rpm=10)
    results = [await store.guard(req) for _ in range(10)]
    assert all(r.allowed for r in results)
    assert [r.requests_remaining for r in results] == list(range(9, -1, -1))
    refused = await store.guard(req)
    assert not refused.allowed and refused.limit == "rpm"
    assert refused.retry_after == pytest.approx(6.0)  # one request per 6 s at 10 rpm
    assert refused.requests_remaining == 0
    assert refused.requests_reset == pytest.approx(60.0)


async def test_burst_with_real_clock(make_store):
    store = await make_store()
    req = GuardRequest(caller(), rpm=10)
    assert all([(await store.guard(req)).allowed for _ in range(10)])
    refused = await store.guard(req)
    assert refused.limit == "rpm" and 5.0 < refused.retry_after <= 6.0


async def test_continuous_refill(make_store):
    clock = FakeClock()
    store = await make_store(time_source=clock)
    req = GuardRequest(caller(), rpm=60)  # one request per second
    for _ in range(60):
        assert (await store.guard(req)).allowed
    clock.advance(0.5)
    half = await store.guard(req)
    assert not half.allowed and half.retry_after == pytest.approx(0.5)
    clock.advance(0.5)
    assert (await store.guard(req)).allowed
    assert not (await store.guard(req)).allowed
    clock.advance(2.5)
    assert (await store.guard(req)).allowed
    assert (await store.guard(req)).allowed
    third = await store.guard(req)
    assert not third.allowed and third.retry_after == pytest.approx(0.5)
    clock.advance(3600)  # never above capacity however long it rests
    results = [await store.guard(req) for _ in range(61)]
    assert sum(r.allowed for r in results) == 60


async def test_refill_with_real_clock(make_store):
    """Without an injected clock (Redis: its own TIME) the bucket still refills with time."""
    store = await make_store()
    req = GuardRequest(caller(), rpm=600)  # ten per second
    while (await store.guard(req)).allowed:  # the burst, and whatever it earned back meanwhile
        pass
    refused = await store.guard(req)
    assert not refused.allowed and 0 < refused.retry_after <= 0.1  # a tenth of a second per request

    async def allowed_again() -> bool:
        return (await store.guard(req)).allowed

    await async_wait_for(allowed_again, timeout=2, what="the bucket refilling")


async def test_token_charge_and_settle(make_store):
    clock = FakeClock()
    store = await make_store(time_source=clock)
    who = caller()
    req = GuardRequest(who, rpm=100, tpm=1000, tokens=400)
    first = await store.guard(req)
    second = await store.guard(req)
    assert first.allowed and first.tokens_remaining == 600
    assert second.allowed and second.tokens_remaining == 200
    refused = await store.guard(req)
    assert refused.limit == "tpm" and refused.retry_after == pytest.approx(12.0)  # 200 tokens at 1000/min
    assert refused.requests_remaining == 98  # all or nothing: the request bucket was not charged
    await store.settle(first, actual_tokens=100, actual_cost_usd=0.0)  # 300 tokens back
    third = await store.guard(req)
    assert third.allowed and third.tokens_remaining == 100
    await store.settle(third, actual_tokens=1400, actual_cost_usd=0.0)  # 1000 more: into debt
    debt = await store.guard(GuardRequest(who, tpm=1000, tokens=10))
    assert debt.limit == "tpm" and debt.tokens_remaining == 0
    assert debt.retry_after == pytest.approx((10 + 900) * 60 / 1000)


async def test_settle_never_fills_above_capacity(make_store):
    clock = FakeClock()
    store = await make_store(time_source=clock)
    req = GuardRequest(caller(), tpm=1000, tokens=500)
    res = await store.guard(req)
    await store.settle(res, actual_tokens=0, actual_cost_usd=0.0)
    await store.settle(res, actual_tokens=0, actual_cost_usd=0.0)
    probe = await store.guard(GuardRequest(req.caller, tpm=1000, tokens=0))
    assert probe.tokens_remaining == 1000 and probe.tokens_reset == 0


async def test_oversized_request_passes_on_a_full_bucket_only(make_store):
    clock = FakeClock()
    store = await make_store(time_source=clock)
    who = caller()
    big = await store.guard(GuardRequest(who, tpm=100, tokens=500))
    assert big.allowed and big.tokens_remaining == 0
    nxt = await store.guard(GuardRequest(who, tpm=100, tokens=1))
    assert nxt.limit == "tpm" and nxt.retry_after == pytest.approx(101 * 60 / 100)  # debt floored at -capacity


async def test_refused_guard_settles_to_nothing(make_store):
    clock = FakeClock()
    store = await make_store(time_source=clock)
    req = GuardRequest(caller(), rpm=1, tpm=100, tokens=50)
    assert (await store.guard(req)).allowed
    refused = await store.guard(req)
    await store.settle(refused, actual_tokens=0, actual_cost_usd=0.0)
    assert (await store.guard(GuardRequest(req.caller, tpm=100, tokens=0))).tokens_remaining == 50


async def test_budget_reserve_refuse_and_settle(make_store):
    clock = FakeClock(ts("2026-03-10T18:00:00"))
    store = await make_store(time_source=clock)
    req = GuardRequest(caller(), budget_usd=1.0, cost_usd=0.3, period="daily")
    results = [await store.guard(req) for _ in range(3)]
    assert all(r.allowed for r in results)
    assert results[-1].budget_remaining_usd == pytest.approx(0.1)
    assert results[0].budget_key == "hr:budget:global:2026-03-10"
    refused = await store.guard(req)
    assert not refused.allowed and refused.limit == "budget"
    assert refused.budget_reset == pytest.approx(6 * 3600) and refused.retry_after == pytest.approx(6 * 3600)
    await store.settle(results[0], actual_tokens=0, actual_cost_usd=0.1)  # 0.2 back
    again = await store.guard(req)
    assert again.allowed and again.budget_remaining_usd == pytest.approx(0.0)


async def test_budget_refusal_charges_no_bucket(make_store):
    clock = FakeClock()
    store = await make_store(time_source=clock)
    req = GuardRequest(caller(), rpm=10, tpm=1000, tokens=100, budget_usd=0.5, cost_usd=0.4,
                       budget_scope="key")
    assert (await store.guard(req)).allowed
    refused = await store.guard(req)
    assert refused.limit == "budget"
    assert refused.requests_remaining == 9 and refused.tokens_remaining == 900


async def test_budget_scope_per_key(make_store):
    clock = FakeClock()
    store = await make_store(time_source=clock)
    a, b = caller(), caller()
    for who in (a, b):
        res = await store.guard(GuardRequest(who, budget_usd=1.0, cost_usd=1.0, budget_scope="key"))
        assert res.allowed and res.budget_key.startswith(f"hr:budget:{who}:")
    assert not (await store.guard(GuardRequest(a, budget_usd=1.0, cost_usd=0.01, budget_scope="key"))).allowed
    assert (await store.guard(GuardRequest(a, budget_usd=1.0, cost_usd=0.01))).allowed  # global is separate


async def test_concurrent_reservations_cannot_overshoot(make_store, kind):
    """100 concurrent reservations from two connections (two "workers"), $0.07 each
    against $1: exactly 14 get through and the budget is never exceeded."""
    stores = [await make_store(), await make_store()] if kind == "redis" else [await make_store()] * 2
    req = GuardRequest(caller(), rpm=1000, budget_usd=1.0, cost_usd=0.07, period="monthly")
    results = await asyncio.gather(*(stores[i % 2].guard(req) for i in range(100)))
    admitted = [r for r in results if r.allowed]
    assert len(admitted) == 14
    assert all(r.limit == "budget" for r in results if not r.allowed)
    assert min(r.budget_remaining_usd for r in admitted) == pytest.approx(0.02)
    # settling every admitted request at its real (lower) cost frees room for more
    await asyncio.gather(*(stores[i % 2].settle(r, 0, 0.05) for i, r in enumerate(admitted)))
    probe = await stores[0].guard(GuardRequest(req.caller, budget_usd=1.0, cost_usd=0.0, period="monthly"))
    assert probe.budget_remaining_usd == pytest.approx(1.0 - 14 * 0.05)


@pytest.mark.parametrize(
    "period, start, first_id, reset, next_id",
    [
        ("hourly", "2026-02-28T23:59:30", "2026-02-28T23", 30, "2026-03-01T00"),
        ("daily", "2028-02-28T23:59:30", "2028-02-28", 30, "2028-02-29"),
        ("monthly", "2026-12-31T23:59:30", "2026-12", 30, "2027-01"),
    ],
)
async def test_budget_period_rollover(make_store, period, start, first_id, reset, next_id):
    clock = FakeClock(ts(start))
    store = await make_store(time_source=clock)
    req = GuardRequest(caller(), budget_usd=1.0, cost_usd=0.6, period=period)
    first = await store.guard(req)
    assert first.allowed and first.budget_key.endswith(":" + first_id)
    refused = await store.guard(req)
    assert refused.limit == "budget" and refused.budget_reset == pytest.approx(reset)
    clock.advance(reset)
    rolled = await store.guard(req)
    assert rolled.allowed and rolled.budget_key.endswith(":" + next_id)
    assert rolled.budget_remaining_usd == pytest.approx(0.4)
    # the old reservation settles against its own period, not the new one
    await store.settle(first, 0, 0.0)
    probe = await store.guard(GuardRequest(req.caller, budget_usd=1.0, cost_usd=0.0, period=period))
    assert probe.budget_remaining_usd == pytest.approx(0.4)


async def test_monthly_reset_spans_the_month(make_store):
    clock = FakeClock(ts("2028-02-15T12:00:00"))
    store = await make_store(time_source=clock)
    res = await store.guard(GuardRequest(caller(), budget_usd=1.0, cost_usd=0.1, period="monthly"))
    assert res.budget_key.endswith(":2028-02")
    assert res.budget_reset == pytest.approx((14 * 24 + 12) * 3600)  # to 2028-03-01 (leap year)


@pytest.mark.usefixtures("redis_server")
async def test_lua_calendar_matches_python(redis_server):
    """The guard script's UTC calendar agrees with Python's datetime for every period."""
    from headroom.state.redis_store import RedisStore

    clock = FakeClock()
    store = RedisStore(redis_server.url, time_source=clock)
    rng = random.Random(7)
    stamps = [rng.uniform(0, 4_102_444_800) for _ in range(150)]  # 1970 .. 2100
    stamps += [ts(t) - d for t in ("2024-03-01T00:00:00", "2100-03-01T00:00:00", "2000-03-01T00:00:00",
                                   "2027-01-01T00:00:00") for d in (0.0, 0.001, 1.0)]
    try:
        for stamp in stamps:
            clock.t = stamp
            for period in ("hourly", "daily", "monthly"):
                res = await store.guard(GuardRequest("cal", budget_usd=1.0, cost_usd=0.0, period=period))
                want_id, want_end = period_bounds(period, stamp)
                assert res.budget_key == f"hr:budget:global:{want_id}", (stamp, period)
                assert res.budget_reset == pytest.approx(want_end - stamp, abs=0.002), (stamp, period)
    finally:
        await store.close()


@pytest.mark.usefixtures("redis_server")
async def test_budget_key_is_due_slightly_beyond_period_end(redis_server):
    """No TTL (volatile-lru must never evict it); the due index deletes it after the slack."""
    from headroom.state.keys import DUE_INDEX_KEY
    from headroom.state.redis_store import RedisStore

    clock = FakeClock(ts("2026-05-05T10:30:00"))
    store = RedisStore(redis_server.url, time_source=clock, budget_slack=600)
    try:
        await store._run("FLUSHDB")
        res = await store.guard(GuardRequest(caller(), budget_usd=1.0, cost_usd=0.1, period="hourly"))
        assert await store._run("PTTL", res.budget_key) == -1
        due = float(await store._run("ZSCORE", DUE_INDEX_KEY, res.budget_key))
        assert due == (ts("2026-05-05T11:00:00") + 600) * 1000
        clock.advance(1800 + 599)
        await store.guard(GuardRequest(caller(), rpm=10))  # any guard sweeps; not due yet
        assert await store._run("EXISTS", res.budget_key) == 1
        clock.advance(2)
        await store.guard(GuardRequest(caller(), rpm=10))
        assert await store._run("EXISTS", res.budget_key) == 0
        assert await store._run("ZSCORE", DUE_INDEX_KEY, res.budget_key) is None
    finally:
        await store.close()


async def test_guard_is_fast_enough_for_a_smoke_check(make_store):
    """Not a benchmark (see load_tests/bench_store.py): a gross-regression tripwire."""
    store = await make_store()
    req = GuardRequest(caller(), rpm=10**6, tpm=10**9, tokens=100, budget_usd=10**6, cost_usd=0.01)
    await store.guard(req)
    start = time.perf_counter()
    for _ in range(200):
        await store.guard(req)
    assert (time.perf_counter() - start) / 200 < 0.005
