"""What only the Redis store has: scripts, key hygiene, outages and recovery."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

pytest.importorskip("redis")

from headroom.state.keys import DUE_INDEX_KEY, SECRET_KEY
from headroom.state.redis_store import RedisStore, redact_url
from headroom.state.scripts import SCRIPTS
from headroom.state.store import GuardRequest, StoreUnavailable
from headroom.workers.redis_server import ping
from testkit.clock import FakeClock
from testkit.waiting import wait_for

pytestmark = pytest.mark.usefixtures("redis_server")

GUARDED = GuardRequest("c0ffee", rpm=100, tpm=10_000, tokens=50, budget_usd=5.0, cost_usd=0.01,
                       period="daily", budget_scope="key")


async def test_noscript_recovery(redis_server):
    store = RedisStore(redis_server.url)
    try:
        assert (await store.guard(GUARDED)).allowed
        before = store.health.script_reloads
        await store._run("SCRIPT", "FLUSH")
        res = await store.guard(GUARDED)
        assert res.allowed and res.requests_remaining == 98
        await store._run("SCRIPT", "FLUSH")
        await store.cache_put("p", "k", b"v")
        assert await store.cache_get("p", "k") == b"v"
        assert store.health.script_reloads - before == 3  # guard, cache_put, cache_get
        assert store.healthy and store.health.failed_ops == 0
    finally:
        await store.close()


async def test_noscript_in_a_batch_reruns_only_the_missing_scripts(redis_server):
    """After a flush another worker may have reloaded some scripts already: a batch whose
    settle ran but whose cache put found NOSCRIPT must not settle twice."""
    clock = FakeClock()
    store = RedisStore(redis_server.url, time_source=clock)
    req = GuardRequest("batch-rerun", tpm=10_000, tokens=100)
    try:
        charged = await store.guard(req)
        assert charged.tokens_remaining == 9_900
        await store._run("SCRIPT", "FLUSH")
        await store._run("SCRIPT", "LOAD", SCRIPTS["settle"])
        await store.settle_and_put([(charged, 600, 0.0)], [("p", "rerun", b"answer")])
        assert await store.cache_get("p", "rerun") == b"answer"
        after = await store.guard(GuardRequest("batch-rerun", tpm=10_000, tokens=0))
        assert after.tokens_remaining == 9_400  # 100 charged, 500 more settled: once
    finally:
        await store._run("DEL", "hr:rl:batch-rerun:b")
        await store.close()


async def test_every_key_expires_or_is_bounded(redis_server):
    store = RedisStore(redis_server.url)
    try:
        await store._run("FLUSHDB")
        res = await store.guard(GUARDED)
        await store.settle(res, actual_tokens=500, actual_cost_usd=0.005)
        await store.cache_put("p", "k", b"v")
        await store.shared_secret()
        keys = sorted(k.decode() for k in await store._run("KEYS", "*"))
        assert keys == sorted([SECRET_KEY, "hr:cache:_all:lru", "hr:cache:p:k", res.budget_key,
                               "hr:rl:c0ffee:b", DUE_INDEX_KEY])
        # Evictable kinds carry a TTL (volatile-lru may take them); protected ones do not, and
        # the buckets and budget counters among them are listed in the due index instead.
        protected = {SECRET_KEY, DUE_INDEX_KEY, res.budget_key, "hr:rl:c0ffee:b"}
        for key in keys:
            ttl = await store._run("PTTL", key)
            assert (ttl == -1) if key in protected else (ttl > 0), key
        due = await store._run("ZRANGE", DUE_INDEX_KEY, 0, -1)
        assert sorted(k.decode() for k in due) == sorted([res.budget_key, "hr:rl:c0ffee:b"])
        assert all(k.startswith("hr:") and len(k.split(":")) >= 4 for k in keys)
    finally:
        await store.close()


async def test_unix_socket_url(redis_server):
    store = RedisStore(redis_server.unix_url)
    try:
        assert (await store.guard(GUARDED)).allowed
    finally:
        await store.close()


async def test_url_schemes_and_redaction():
    tls = RedisStore("rediss://:hunter2@cache.example:6380/1")
    endpoint = tls._client.endpoint
    assert endpoint.tls and endpoint.tls_verify
    assert (endpoint.host, endpoint.port, endpoint.db) == ("cache.example", 6380, 1)
    assert endpoint.password == "hunter2"
    assert redact_url("rediss://:hunter2@cache.example:6380/1") == "rediss://:***@cache.example:6380/1"
    assert redact_url("redis://u:pw@h/0") == "redis://u:***@h/0"
    assert redact_url("unix:///tmp/r.sock") == "unix:///tmp/r.sock"
    await tls.close()


async def _all_fail_fast(store: RedisStore, calls: int = 20) -> float:
    start = time.perf_counter()
    for i in range(calls):
        with pytest.raises(StoreUnavailable):
            if i % 3 == 0:
                await store.guard(GUARDED)
            elif i % 3 == 1:
                await store.cache_get("p", "k")
            else:
                await store.get("hr:x:y:z")
    return time.perf_counter() - start


@pytest.mark.parametrize("transport", ["tcp", "unix"])
async def test_outage_fails_fast_warns_once_and_recovers(own_redis, caplog, transport):
    url = own_redis.url if transport == "tcp" else own_redis.unix_url
    clock = FakeClock()
    store = RedisStore(url, retry_interval=0.3, clock=clock)
    caplog.set_level(logging.INFO, logger="headroom.state")
    try:
        assert (await store.guard(GUARDED)).allowed
        own_redis.kill()

        elapsed = await _all_fail_fast(store)
        assert elapsed < 0.5
        # concurrent callers during the outage: still one warning
        results = await asyncio.gather(*(store.guard(GUARDED) for _ in range(20)), return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()
        assert not store.healthy and store.health.outages == 1
        assert store.health.failed_ops >= 1 and store.health.skipped_ops >= 1

        skipped = store.health.skipped_ops
        clock.advance(0.35)  # past the back-off: a probe, which still finds Redis down
        with pytest.raises(StoreUnavailable):
            await store.guard(GUARDED)
        assert store.health.outages == 1 and store.health.skipped_ops == skipped

        own_redis.start()  # same port and socket, empty: no scripts, no data
        with pytest.raises(StoreUnavailable):  # the failed probe began a new back-off
            await store.guard(GUARDED)
        clock.advance(0.35)
        res = await store.guard(GUARDED)
        assert res.allowed and res.requests_remaining == 99
        assert store.healthy and store.health.script_reloads >= 1
        assert any("is back" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)

        own_redis.kill()  # a second outage: a second warning
        await _all_fail_fast(store, 3)
        assert store.health.outages == 2
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    finally:
        await store.close()


async def test_a_restart_is_one_outage_not_two(own_redis, caplog):
    """The connection dies with Redis; after it returns, no stale socket may fail again."""
    clock = FakeClock()
    store = RedisStore(own_redis.url, retry_interval=0.2, clock=clock)
    caplog.set_level(logging.WARNING, logger="headroom.state")
    try:
        await asyncio.gather(*(store.guard(GUARDED) for _ in range(8)))
        own_redis.kill()
        with pytest.raises(StoreUnavailable):
            await store.guard(GUARDED)
        own_redis.start()
        clock.advance(0.25)
        await store.guard(GUARDED)  # the one probe: Redis is back
        results = await asyncio.gather(*(store.guard(GUARDED) for _ in range(8)), return_exceptions=True)
        assert not any(isinstance(r, Exception) for r in results), results
        for _ in range(8):
            await store.guard(GUARDED)
        assert store.health.outages == 1
        assert sum("is unavailable" in r.getMessage() for r in caplog.records) == 1
    finally:
        await store.close()


async def test_no_redis_at_all_fails_fast(caplog):
    from testkit.ports import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", retry_interval=5)
    caplog.set_level(logging.WARNING, logger="headroom.state")
    try:
        assert await _all_fail_fast(store, 50) < 0.5
        assert len(caplog.records) == 1 and store.health.outages == 1 and store.health.failed_ops == 1
    finally:
        await store.close()


async def test_time_source_override_is_used(redis_server):
    """Only tests pin the clock; by default the scripts read Redis TIME."""
    clock = FakeClock()
    store = RedisStore(redis_server.url, time_source=clock)
    try:
        res = await store.guard(GuardRequest("clocked", budget_usd=1.0, cost_usd=0.0, period="daily"))
        assert res.budget_key.endswith(":2026-01-01") and res.budget_reset == pytest.approx(86400)
    finally:
        await store.close()


async def test_hung_redis_costs_one_timeout_then_fails_fast(own_redis):
    """A frozen Redis (SIGSTOP) costs the first caller one socket timeout; the rest fail at once."""
    import os
    import signal

    clock = FakeClock()
    store = RedisStore(own_redis.url, socket_timeout=0.1, retry_interval=0.3, clock=clock)
    try:
        assert (await store.guard(GUARDED)).allowed
        os.kill(own_redis.pid, signal.SIGSTOP)
        try:
            start = time.perf_counter()
            with pytest.raises(StoreUnavailable):
                await store.guard(GUARDED)
            assert time.perf_counter() - start < 0.3
            assert await _all_fail_fast(store) < 0.05
        finally:
            os.kill(own_redis.pid, signal.SIGCONT)
        wait_for(lambda: ping(("127.0.0.1", own_redis.port)), timeout=5, what="the resumed redis-server answering")
        clock.advance(0.35)
        assert (await store.guard(GUARDED)).allowed and store.healthy
    finally:
        await store.close()


async def test_concurrent_calls_share_one_connection(redis_server):
    """Every concurrent call of a worker goes over one pipelined socket, each gets its own answer."""
    store = RedisStore(redis_server.url)
    try:
        req = GuardRequest("pipelined", rpm=500)
        results = await asyncio.gather(*(store.guard(req) for _ in range(300)))
        remaining = sorted(r.requests_remaining for r in results)
        assert len(set(remaining)) == 300 and remaining[-1] == 499 and remaining[0] >= 199
        assert store._client.connects == 1
    finally:
        await store._run("DEL", "hr:rl:pipelined:b")
        await store.close()


async def test_script_error_fails_open_and_warns_once(redis_server, caplog):
    store = RedisStore(redis_server.url)
    caplog.set_level(logging.WARNING, logger="headroom.state")
    try:
        await store._run("HSET", "hr:rl:wrongtype:b", "r", 1)  # GET on a hash: WRONGTYPE
        for _ in range(3):
            with pytest.raises(StoreUnavailable):
                await store.guard(GuardRequest("wrongtype", rpm=5))
        assert store.healthy and store.health.failed_ops == 3 and len(caplog.records) == 1
        assert (await store.guard(GUARDED)).allowed
    finally:
        await store._run("DEL", "hr:rl:wrongtype:b")
        await store.close()
