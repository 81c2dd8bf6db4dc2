"""``/livez`` and ``/readyz``, the Kubernetes probes (deploy/kubernetes/proxy.yaml), on real
proxies: liveness never depends on Headroom's helpers; readiness says whether a request
routed here now would be served as configured."""

from __future__ import annotations

import httpx

from testkit.waiting import wait_for

ANTHROPIC = {"x-api-key": "sk-ant-probe", "anthropic-version": "2023-06-01"}


def _ready(proxy) -> httpx.Response:
    return httpx.get(f"{proxy.url}/readyz", timeout=5)


def test_livez_and_readyz_answer_once_the_proxy_is_warm(start_proxy):
    proxy = start_proxy("--no-cache")
    live = httpx.get(f"{proxy.url}/livez", timeout=5)
    assert live.status_code == 200 and live.json() == {"status": "alive"}
    ready = wait_for(lambda: (r := _ready(proxy)).status_code == 200 and r, timeout=15, what="/readyz 200")
    assert ready.json() == {"status": "ready"}
    # Open like /health: no admin token asked, and no compression or guard ran on them.
    assert "x-headroom-tokens-before" not in ready.headers


def test_readyz_follows_the_store_with_fail_closed_and_livez_does_not(start_proxy, own_redis):
    proxy = start_proxy("--redis-url", own_redis.url, "--fail-closed", "--no-cache", "--admin-token", "probe-admin",
                        "--state-secret", "probe-secret-0123456789abcdef")
    wait_for(lambda: _ready(proxy).status_code == 200, timeout=15, what="/readyz 200 with Redis up")
    own_redis.kill()
    # Requests now get 503s (--fail-closed): the pod must leave the Service, but not be restarted.
    down = wait_for(lambda: (r := _ready(proxy)).status_code == 503 and r, timeout=15, what="/readyz 503")
    assert down.json() == {"status": "not ready", "reason": "shared store unreachable (--fail-closed)"}
    assert httpx.get(f"{proxy.url}/livez", timeout=5).status_code == 200
    assert httpx.post(f"{proxy.url}/v1/messages", headers=ANTHROPIC, timeout=10,
                      json={"model": "claude-sonnet-4-5", "max_tokens": 8,
                            "messages": [{"role": "user", "content": "hi"}]}).status_code == 503
    own_redis.start()
    wait_for(lambda: _ready(proxy).status_code == 200, timeout=20, interval=0.1, what="/readyz 200 again")


def test_without_fail_closed_a_store_outage_keeps_the_proxy_ready(start_proxy, own_redis):
    """Fail open: requests still flow (unguarded) while Redis is away, so the pod stays routed."""
    proxy = start_proxy("--redis-url", own_redis.url, "--no-cache", "--state-secret", "probe-secret-0123456789abcdef")
    wait_for(lambda: _ready(proxy).status_code == 200, timeout=15, what="/readyz 200")
    own_redis.kill()
    assert httpx.get(f"{proxy.url}/health", timeout=5).json()["status"] == "degraded"
    assert _ready(proxy).status_code == 200
