"""Response cache (partitioned, LRU-bounded, TTL) and plain key/value: both stores."""

from __future__ import annotations

from headroom.state.keys import make_key
from testkit.clock import FakeClock
from testkit.waiting import async_wait_for


async def test_cache_roundtrip_is_partitioned_by_caller(make_store):
    store = await make_store()
    assert await store.cache_get("alice", "req1") is None
    await store.cache_put("alice", "req1", b'{"id":"msg_1"}')
    assert await store.cache_get("alice", "req1") == b'{"id":"msg_1"}'
    assert await store.cache_get("bob", "req1") is None


async def test_cache_lru_bound(make_store):
    clock = FakeClock()  # Redis scores recency in ms: step the clock so the order is exact

    def tick():
        clock.advance(0.01)

    store = await make_store(cache_max_entries=3, time_source=clock)
    for name in ("a", "b", "c"):
        await store.cache_put("p", name, name.encode())
        tick()
    assert await store.cache_get("p", "a") == b"a"  # a becomes the most recent
    tick()
    await store.cache_put("q", "d", b"d")  # one bound across every partition
    tick()
    assert await store.cache_get("p", "b") is None  # least recently used: evicted
    for part, name in (("p", "a"), ("p", "c"), ("q", "d")):
        assert await store.cache_get(part, name) == name.encode()
        tick()
    for i in range(10):
        await store.cache_put("p", f"x{i}", b"x")
        tick()
    present = [n for n in ("a", "c", *[f"x{i}" for i in range(10)]) if await store.cache_get("p", n)]
    assert present == ["x7", "x8", "x9"]


async def test_cache_ttl(make_store):
    store = await make_store(cache_ttl=0.2)
    await store.cache_put("p", "k", b"v")
    assert await store.cache_get("p", "k") == b"v"

    async def expired() -> bool:
        return await store.cache_get("p", "k") is None

    await async_wait_for(expired, timeout=2, what="the cached answer expiring")


async def test_kv_operations(make_store):
    store = await make_store()
    key = make_key("ccr", "caller", "x")
    assert await store.get(key) is None
    await store.set(key, b"1", ttl=0.2)
    assert await store.get(key) == b"1"
    await store.set_many({make_key("ccr", "c", "a"): b"A", make_key("ccr", "c", "b"): b"B"}, ttl=60)
    assert await store.get_many([make_key("ccr", "c", "a"), "hr:none:c:x", make_key("ccr", "c", "b")]) == [
        b"A", None, b"B"]
    await store.delete(make_key("ccr", "c", "a"))
    assert await store.get(make_key("ccr", "c", "a")) is None
    counter = make_key("stat", "c", "n")
    assert await store.incr(counter, ttl=0.2) == 1
    assert await store.incr(counter, 4, ttl=10) == 5  # the first TTL stays
    assert await store.get(counter) == b"5"

    async def expired() -> bool:
        return await store.get(key) is None and await store.get(counter) is None

    await async_wait_for(expired, timeout=2, what="both TTLs expiring")
    assert await store.get(make_key("ccr", "c", "b")) == b"B"  # the long TTL still holds


async def test_shared_secret_is_stable(make_store, kind):
    first = await make_store()
    second = await make_store() if kind == "redis" else first
    secret = await first.shared_secret()
    assert len(secret) == 32
    assert await second.shared_secret() == secret
