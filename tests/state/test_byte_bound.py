"""Stored state is bounded by bytes (``--store-max-mb``), on both stores: the memory store by
the weight of its entries, the private Redis by ``maxmemory`` with ``volatile-lru``. What
is evicted is the evictable kinds (cached answers, originals, memo entries), least recently
used first; rate-limit buckets, budgets and the deployment secret survive any flood."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import tracemalloc
import uuid
from pathlib import Path

import pytest
import redis

from headroom.state.keys import DUE_INDEX_KEY, make_key
from headroom.state.memory_store import MemoryStore, entry_weight
from headroom.state.redis_store import RedisStore
from headroom.state.store import GuardRequest
from headroom.workers.redis_server import EVICTION_POLICY, PrivateRedis
from testkit import processes
from testkit.services import REDIS_BIN, start_mock, start_proxy, stop
from testkit.waiting import wait_for

BOUND = 8 * 1024 * 1024
FLOOD = 5 * BOUND  # bytes of values written, far beyond the bound
VALUE = 20_000


def values(n: int, tag: str) -> dict[str, bytes]:
    return {make_key("ccr", "c0ffee", f"{tag}{i:06d}"): os.urandom(VALUE) for i in range(n)}


@contextlib.asynccontextmanager
async def bounded_private_redis():
    """A RedisStore on the private redis-server (the one ``--workers N`` starts), bounded to
    ``BOUND`` bytes by ``maxmemory``."""
    if REDIS_BIN is None:
        pytest.skip("redis-server not installed")
    server = PrivateRedis(maxmemory=BOUND)
    url = await asyncio.to_thread(server.start)
    store = RedisStore(url, socket_timeout=5, connect_timeout=5)
    try:
        yield store
    finally:
        await store.close()
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def private_redis():
    async with bounded_private_redis() as store:
        yield store


@pytest.fixture(params=["memory", "redis"])
async def bounded(request):
    """A store of each kind bounded to ``BOUND`` bytes: the memory store by its own weight,
    the private Redis by ``maxmemory``."""
    if request.param == "redis":
        async with bounded_private_redis() as store:
            yield store
        return
    store = MemoryStore(max_bytes=BOUND)
    yield store
    await store.close()


async def held_bytes(store) -> int:
    if isinstance(store, MemoryStore):
        return store.held_bytes
    info = (await store._run("INFO", "memory")).decode()
    return int(next(line.split(":")[1] for line in info.splitlines() if line.startswith("used_memory:")))


async def test_a_flood_of_stored_state_stays_within_the_bound_and_spares_guards(bounded):
    caller = uuid.uuid4().hex
    rated = GuardRequest(caller, rpm=3)
    budgeted = GuardRequest(caller, budget_usd=1.0, cost_usd=0.4, period="monthly", budget_scope="key")
    secret = await bounded.shared_secret()
    for _ in range(3):
        assert (await bounded.guard(rated)).allowed
    assert not (await bounded.guard(rated)).allowed  # the bucket is empty
    for _ in range(2):
        assert (await bounded.guard(budgeted)).allowed  # 0.8 of 1.0 spent

    chunk = 50
    for start in range(0, FLOOD // VALUE, chunk):
        await bounded.set_many(values(chunk, f"f{start}-"), ttl=3600)
        await bounded.cache_put(caller, f"answer{start}", os.urandom(VALUE))
        assert await held_bytes(bounded) <= BOUND * 1.1  # Redis counts its buffers and overhead too

    # The bound held and old entries were evicted, the newest kept. (Redis's LRU is sampled,
    # with a clock of one second: which keys of a fast flood go is close to random there.)
    newest = [make_key("ccr", "c0ffee", f"f{start}-{i:06d}") for i in range(chunk)]
    kept = [v is not None for v in await bounded.get_many(newest)]
    assert all(kept) if isinstance(bounded, MemoryStore) else any(kept)
    if isinstance(bounded, MemoryStore):
        assert await bounded.get(make_key("ccr", "c0ffee", "f0-000000")) is None
    # ...but not the guards' state: the bucket is still empty, 0.8 is still spent, same secret.
    assert (await bounded.guard(rated)).limit == "rpm"
    verdict = await bounded.guard(budgeted)
    assert verdict.limit == "budget" and verdict.budget_remaining_usd == pytest.approx(0.2)
    assert await bounded.shared_secret() == secret


async def test_the_private_redis_evicts_only_keys_with_a_ttl(private_redis):
    bounded = private_redis
    config = await bounded._run("CONFIG", "GET", "maxmemory*")
    settings = dict(zip(config[::2], config[1::2]))
    assert settings[b"maxmemory"] == str(BOUND).encode()
    assert settings[b"maxmemory-policy"] == EVICTION_POLICY.encode() == b"volatile-lru"
    caller = uuid.uuid4().hex
    await bounded.guard(GuardRequest(caller, rpm=3, budget_usd=1.0, cost_usd=0.1))
    for start in range(0, FLOOD // VALUE, 50):
        await bounded.set_many(values(50, f"g{start}-"), ttl=3600)
    info = (await bounded._run("INFO", "stats")).decode()
    assert int(next(x.split(":")[1] for x in info.splitlines() if x.startswith("evicted_keys:"))) > 0
    assert await bounded._run("ZCARD", DUE_INDEX_KEY) == 2  # the bucket and the budget, never evicted


async def test_memory_store_evicts_least_recently_used_first():
    store = MemoryStore(max_bytes=BOUND)
    keys = list(values(BOUND // VALUE // 2, "a"))  # about half the bound
    for key in keys:
        await store.set(key, os.urandom(VALUE))
    await store.get(keys[0])  # now the most recently used
    await store.set_many(values(BOUND // VALUE // 2, "b"))  # pushes the older half out
    assert await store.get(keys[0]) is not None
    assert await store.get(keys[1]) is None
    assert store.held_bytes <= store.max_bytes


async def test_an_entry_over_a_quarter_of_the_bound_is_not_kept_and_replaces_nothing():
    store = MemoryStore(max_bytes=BOUND)
    await store.set("hr:ccr:c:small", b"x" * 100)
    await store.set("hr:ccr:c:big", b"old")
    await store.set("hr:ccr:c:big", os.urandom(BOUND // 4 + 1))
    assert await store.get("hr:ccr:c:big") is None  # the old value does not linger either
    assert await store.get("hr:ccr:c:small") == b"x" * 100


async def test_prefix_guard_records_outlive_memo_entries():
    """A block's memo entry and its ``sent`` record are written together; the record must
    survive the memo entry's eviction, or the block could go out with other bytes."""
    store = MemoryStore(max_bytes=BOUND)
    memo, sent = make_key("memo", "c", "json.1"), make_key("sent", "c", "json.1")
    await store.set_many({memo: os.urandom(VALUE), sent: b"1|digest|terms"}, ttl=3600)
    await store.set_many(values(FLOOD // VALUE, "m"), ttl=3600)
    assert await store.get(memo) is None
    assert await store.get(sent) == b"1|digest|terms"


def test_entry_weight_is_honest_about_python_overhead():
    """The weight counted per entry is within 15 % of what Python really allocates for it."""
    async def fill(store: MemoryStore, n: int) -> None:
        for i in range(n):
            await store.set(make_key("memo", "c" * 32, f"json.{i:040x}"), os.urandom(1000), ttl=60)
            await store.cache_put("c" * 32, f"{i:064x}", os.urandom(1000))

    store = MemoryStore(max_bytes=1 << 40, cache_max_entries=10**6)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        asyncio.run(fill(store, 5000))
        allocated = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(store._data) == 10_000
    assert 0.85 < store.held_bytes / allocated < 1.15
    assert entry_weight("k", (b"v", None)) > 200  # the overhead is counted, not just the bytes


@pytest.mark.skipif(REDIS_BIN is None, reason="redis-server not installed")
def test_workers_n_bound_their_private_redis_by_store_max_mb(tmp_path):
    """Through the real CLI: ``--workers 2 --store-max-mb 8`` starts its redis-server with
    ``maxmemory`` 8 MiB and ``volatile-lru`` (the fixture above checks what that does)."""
    mock = start_mock(tmp_path / "mock.log")
    try:
        proxy = start_proxy(tmp_path / "proxy.log", mock.url, "--workers", "2", "--store-max-mb", "8")
        try:
            def private_socket() -> str | None:
                """redis-server rewrites its process title to ``… unixsocket:PATH``."""
                for pid in processes.descendants(proxy.proc.pid):
                    try:
                        title = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
                    except OSError:
                        continue
                    if "redis-server" in title and "unixsocket:" in title:
                        return title.split("unixsocket:", 1)[1].split("\0")[0].strip()
                return None

            path = wait_for(private_socket, timeout=10, what="the private redis-server")
            client = redis.Redis(unix_socket_path=path, socket_timeout=5)
            try:
                assert client.config_get("maxmemory")["maxmemory"] == str(8 * 1024 * 1024)
                assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
            finally:
                client.close()
        finally:
            stop(proxy.proc)
    finally:
        assert mock.proc is not None
        stop(mock.proc)
