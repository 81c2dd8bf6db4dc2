"""Limits, budgets, cache and stats that hold across 4 real workers and across instances.

Every test launches the real CLI against a real redis-server started by this test session.
"""

from __future__ import annotations

import asyncio
import math
import time

import anthropic
import httpx
import pytest
from redis import Redis

from headroom.state.keys import CACHE_INDEX_KEY
from testkit.waiting import wait_for

ANTHROPIC = {"x-api-key": "sk-ant-shared-state-key", "anthropic-version": "2023-06-01"}


def body(text: str, **extra) -> dict:
    return {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": text}], **extra}


async def burst(url: str, bodies: list[dict], headers: dict) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        return await asyncio.gather(*(client.post(f"{url}/v1/messages", json=b, headers=headers) for b in bodies))


def wait_for_stats(proxy, done, headers: dict | None = None, timeout: float = 5.0) -> dict:
    """/stats once ``done(stats)`` holds (workers flush their figures behind the answers)."""

    def ready() -> dict | None:
        stats = httpx.get(f"{proxy.url}/stats", headers=headers or {}).json()
        return stats if done(stats) else None

    return wait_for(ready, timeout=timeout, interval=0.1, what="/stats reaching the expected figures")


def cached_entries(redis) -> int:
    """Answers in the response cache of that Redis (every caller's partition)."""
    client = Redis.from_url(redis.url)
    try:
        return sum(1 for key in client.scan_iter("hr:cache:*", count=1000) if key != CACHE_INDEX_KEY.encode())
    finally:
        client.close()


def assert_native_429(response: httpx.Response, code: str) -> None:
    assert response.status_code == 429
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "rate_limit_error"
    assert response.headers["x-headroom-error"] == "1"


async def test_rpm_holds_across_four_workers(start_proxy, redis_server, fresh_mock):
    proxy = start_proxy("--workers", "4", "--redis-url", redis_server.url, "--rpm", "50", "--tpm", "0",
                        "--no-cache")
    started = time.monotonic()
    responses = await burst(proxy.url, [body(f"burst {i}") for i in range(200)], ANTHROPIC)
    elapsed = time.monotonic() - started
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    refill = math.ceil(elapsed * 50 / 60)  # the bucket refills continuously while the burst lasts
    assert 50 <= len(ok) <= 50 + refill, (len(ok), elapsed, proxy.output())
    for response in refused:
        assert_native_429(response, "rate_limit_exceeded")
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["anthropic-ratelimit-requests-limit"] == "50"
        assert response.headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert response.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert len(fresh_mock.requests()) == len(ok)  # nothing refused reached the upstream


async def test_budget_is_never_overshot_by_more_than_one_request(start_proxy, own_redis, fresh_mock):
    # Its own Redis: global figures from other tests' proxies (which flush behind) stay out.
    proxy = start_proxy("--workers", "4", "--redis-url", own_redis.url, "--budget", "0.004",
                        "--no-rate-limit", "--no-cache", "--admin-token", "t")
    statuses: list[int] = []
    for round_ in range(6):  # until actual spend, not just reservations, has used the budget up
        responses = await burst(proxy.url, [body(f"spend {round_} {i}") for i in range(30)], ANTHROPIC)
        statuses += [r.status_code for r in responses]
        for response in responses:
            if response.status_code != 200:
                assert_native_429(response, "budget_exceeded")
                assert "budget exhausted" in response.json()["error"]["message"]
                assert "retry-after" not in response.headers
                assert response.headers["x-should-retry"] == "false"
        if not any(r.status_code == 200 for r in responses):
            break
    successes = statuses.count(200)
    # Every worker adds its figures to the global totals at its next flush (a fraction of a second).
    stats = await asyncio.to_thread(wait_for_stats, proxy, lambda st: st["requests_by_status"].get("200") == successes,
                                    {"x-headroom-admin-token": "t"})
    assert successes == stats["requests_by_status"]["200"] and successes >= 2
    assert statuses.count(429) >= 30
    per_request = stats["cost_usd"] / successes
    assert stats["cost_usd"] <= 0.004 + per_request
    assert stats["cost_usd"] > 0.004 - 2 * 0.0016  # the budget was really used, not just blocked


def test_budget_refusal_in_openai_shape(start_proxy, fresh_mock):
    proxy = start_proxy("--budget", "0.0000001", "--no-cache")
    response = httpx.post(f"{proxy.url}/v1/chat/completions", headers={"authorization": "Bearer k"},
                          json={"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "insufficient_quota"
    assert response.headers["x-should-retry"] == "false" and "retry-after" not in response.headers


@pytest.mark.parametrize("stream", [False, True])
def test_cached_answer_is_served_by_every_worker(start_proxy, redis_server, fresh_mock, stream):
    proxy = start_proxy("--workers", "4", "--redis-url", redis_server.url, "--no-rate-limit")
    request = body(f"cache me {stream} {time.time()}", stream=stream)
    stored = cached_entries(redis_server)
    answers, cache_states = [], []
    for i in range(20):
        with httpx.Client() as client:  # a fresh connection each time: any worker may answer
            response = client.post(f"{proxy.url}/v1/messages", json=request, headers=ANTHROPIC)
        assert response.status_code == 200
        answers.append(response.content)
        cache_states.append(response.headers["x-headroom-cache"])
        if i == 0:  # the answer is stored just behind the response (batched writes, 10 ms)
            wait_for(lambda: cached_entries(redis_server) > stored, what="the answer reaching the cache")
    assert len(fresh_mock.requests()) == 1
    assert cache_states[0] == "miss" and set(cache_states[1:]) == {"hit"}
    assert len(set(answers)) == 1  # replayed exactly as first received
    if stream:
        client = anthropic.Anthropic(base_url=proxy.url, api_key=ANTHROPIC["x-api-key"], max_retries=0)
        with client.messages.stream(**{k: v for k, v in request.items() if k != "stream"}) as replayed:
            assert replayed.get_final_message().content[0].text.startswith("mock reply: cache me")
        assert len(fresh_mock.requests()) == 1


def test_cache_is_partitioned_by_caller_and_bypassable(start_proxy, redis_server, fresh_mock):
    proxy = start_proxy("--workers", "2", "--redis-url", redis_server.url, "--no-rate-limit")
    request = body(f"private {time.time()}")
    stored = cached_entries(redis_server)
    first = httpx.post(f"{proxy.url}/v1/messages", json=request, headers=ANTHROPIC)
    wait_for(lambda: cached_entries(redis_server) > stored, what="the answer reaching the cache")
    again = httpx.post(f"{proxy.url}/v1/messages", json=request, headers=ANTHROPIC)
    other = httpx.post(f"{proxy.url}/v1/messages", json=request, headers={**ANTHROPIC, "x-api-key": "sk-other"})
    assert [r.headers["x-headroom-cache"] for r in (first, again, other)] == ["miss", "hit", "miss"]
    fresh = httpx.post(f"{proxy.url}/v1/messages", json=request, headers={**ANTHROPIC, "cache-control": "no-cache"})
    assert fresh.headers["x-headroom-cache"] == "bypass"
    assert len(fresh_mock.requests()) == 3
    errored = body(f"error {time.time()}")
    for _ in range(2):
        failed = httpx.post(f"{proxy.url}/v1/messages", json=errored, headers={**ANTHROPIC, "x-mock-status": "500"})
        assert failed.status_code == 500
    assert len(fresh_mock.requests()) == 5  # errors are never cached


def test_two_instances_share_one_rate_limit(start_proxy, redis_server, fresh_mock):
    first = start_proxy("--redis-url", redis_server.url, "--rpm", "10", "--tpm", "0", "--no-cache",
                        "--state-secret", "shared-secret-for-tests-0123456789")
    second = start_proxy("--redis-url", redis_server.url, "--rpm", "10", "--tpm", "0", "--no-cache",
                         "--state-secret", "shared-secret-for-tests-0123456789")
    headers = {**ANTHROPIC, "x-api-key": f"sk-two-instances-{time.time()}"}
    statuses = [httpx.post(f"{proxy.url}/v1/messages", json=body(f"alt {i}"), headers=headers).status_code
                for i, proxy in enumerate([first, second] * 6)]
    assert statuses[:10] == [200] * 10
    assert statuses[10:] == [429, 429]


def test_instances_share_the_secret_through_redis(start_proxy, redis_server, fresh_mock):
    """Without --state-secret the secret is created once in Redis, so callers hash alike everywhere."""
    first = start_proxy("--redis-url", redis_server.url, "--rpm", "3", "--tpm", "0", "--no-cache")
    second = start_proxy("--redis-url", redis_server.url, "--rpm", "3", "--tpm", "0", "--no-cache")
    headers = {**ANTHROPIC, "x-api-key": f"sk-secretless-{time.time()}"}
    statuses = [httpx.post(f"{p.url}/v1/messages", json=body(f"s {i}"), headers=headers).status_code
                for i, p in enumerate([first, second, first, second])]
    assert statuses == [200, 200, 200, 429]


def test_redis_outage_fails_open_and_limits_resume(start_proxy, own_redis, fresh_mock):
    proxy = start_proxy("--redis-url", own_redis.url, "--rpm", "20", "--tpm", "0", "--no-cache",
                        "--state-secret", "outage-secret-0123456789abcdef", "--admin-token", "t")
    headers = {**ANTHROPIC, "x-api-key": f"sk-outage-{time.time()}"}

    def send(n: int, tag: str) -> list[int]:
        return [httpx.post(f"{proxy.url}/v1/messages", json=body(f"{tag} {i}"), headers=headers, timeout=10).status_code
                for i in range(n)]

    assert send(5, "before") == [200] * 5
    own_redis.kill()
    during = send(40, "during")
    assert during == [200] * 40  # no request fails, and none is limited while Redis is away
    health = httpx.get(f"{proxy.url}/health").json()
    assert health["status"] == "degraded"
    own_redis.start()
    # The store probes Redis again after its back-off; /health reads the store, so it says when.
    wait_for(lambda: httpx.get(f"{proxy.url}/health").json()["status"] == "healthy", timeout=5,
             what="the proxy finding Redis again")
    after = send(40, "after")
    assert after.count(200) <= 20 + 2 and after.count(429) >= 18  # limits are back (fresh bucket)
    output = proxy.output()
    assert output.count("is unavailable") == 1, output  # one warning for the outage, not one per request
    metrics = httpx.get(f"{proxy.url}/metrics", headers={"x-headroom-admin-token": "t"}).text
    assert any(line.startswith("headroom_store_unavailable_total") and float(line.split()[-1]) > 0
               for line in metrics.splitlines())


def test_fail_closed_rejects_while_redis_is_away(start_proxy, own_redis, fresh_mock):
    proxy = start_proxy("--redis-url", own_redis.url, "--fail-closed", "--no-cache",
                        "--state-secret", "fail-closed-secret-0123456789")
    assert httpx.post(f"{proxy.url}/v1/messages", json=body("up"), headers=ANTHROPIC).status_code == 200
    own_redis.kill()
    response = httpx.post(f"{proxy.url}/v1/messages", json=body("down"), headers=ANTHROPIC)
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "overloaded_error"
    assert "--fail-closed" in response.json()["error"]["message"]


def test_global_stats_add_up_across_workers_and_instances(start_proxy, own_redis, fresh_mock):
    first = start_proxy("--workers", "2", "--redis-url", own_redis.url, "--no-rate-limit", "--no-cache")
    second = start_proxy("--redis-url", own_redis.url, "--no-rate-limit", "--no-cache")
    for i in range(12):
        with httpx.Client() as client:
            client.post(f"{(first, second)[i % 2].url}/v1/messages", json=body(f"stat {i}"), headers=ANTHROPIC)
    for proxy in (first, second):
        stats = wait_for_stats(proxy, lambda st: st["total_requests"] == 12)
        assert httpx.get(f"{proxy.url}/health").json()["stats"]["total_requests"] == 12
        assert stats["scope"] == "global" and stats["requests_by_status"] == {"200": 12}
        assert stats["latency_ms"]["samples"] == 12
        assert stats["models"]["claude-sonnet-4-5"]["requests"] == 12


def test_several_workers_without_redis_url_get_a_private_redis(start_proxy, fresh_mock):
    proxy = start_proxy("--workers", "2", "--rpm", "4", "--tpm", "0", "--no-cache")
    assert "state: redis unix://" in proxy.output()
    statuses = []
    for i in range(6):
        with httpx.Client() as client:
            statuses.append(client.post(f"{proxy.url}/v1/messages", json=body(f"p {i}"), headers=ANTHROPIC).status_code)
    assert statuses == [200] * 4 + [429] * 2  # one limit, however the connections were spread
