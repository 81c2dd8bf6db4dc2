"""The hot path's composite calls: cache lookup + guard in one round trip, settle + cache put in one."""

from __future__ import annotations

from headroom.state.store import GuardRequest


async def test_admit_returns_cached_answer_and_verdict(make_store):
    store = await make_store()
    req = GuardRequest(caller="c1", rpm=2, tpm=1000, tokens=10)
    first = await store.admit(("c1", "k"), req)
    assert first.cached is None and first.guard.allowed and first.guard.requests_remaining == 1
    await store.settle_and_put([(first.guard, 12, 0.0)], [("c1", "k", b"answer")])
    second = await store.admit(("c1", "k"), req)
    assert second.cached == b"answer" and second.guard.allowed
    third = await store.admit(("c1", "k"), req)
    assert third.cached == b"answer" and not third.guard.allowed and third.guard.limit == "rpm"


async def test_admit_with_only_one_part(make_store):
    store = await make_store()
    assert (await store.admit(("c2", "none"), None)).guard is None
    only_guard = await store.admit(None, GuardRequest(caller="c2", rpm=1))
    assert only_guard.cached is None and only_guard.guard.allowed
    unlimited = await store.admit(None, GuardRequest(caller="c2"))
    assert unlimited.guard.allowed  # no limits asked: nothing charged, always allowed
    await store.settle_and_put([], [])


async def test_finish_reconciles_the_budget(make_store):
    store = await make_store()
    req = GuardRequest(caller="c3", budget_usd=1.0, cost_usd=0.6)
    admitted = await store.admit(None, req)
    assert admitted.guard.allowed
    assert not (await store.guard(req)).allowed  # 0.6 reserved + 0.6 > 1.0
    await store.settle_and_put([(admitted.guard, 100, 0.1)], [])  # it really cost 0.1
    assert (await store.guard(req)).allowed  # 0.1 spent + 0.6 fits


async def test_composite_calls_survive_a_script_flush(kind, make_store):
    store = await make_store()
    req = GuardRequest(caller="c4", rpm=5)
    await store.admit(("c4", "k"), req)
    if kind == "redis":
        await store._run("SCRIPT", "FLUSH")
    again = await store.admit(("c4", "k"), req)
    assert again.guard.allowed and again.guard.requests_remaining == 3
    await store.settle_and_put([], [("c4", "k", b"v"), ("c4", "k2", b"w")])
    assert (await store.admit(("c4", "k"), None)).cached == b"v"
    assert await store.cache_get("c4", "k2") == b"w"
