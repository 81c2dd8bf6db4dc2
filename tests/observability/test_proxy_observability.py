"""Observability end to end: 2 real workers, the real CLI, a real Prometheus."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import anthropic
import httpx
import openai
import pytest

from testkit.prometheus import require_prometheus, start_prometheus
from testkit.waiting import wait_for

API_KEY = "sk-ant-very-secret-key-0123456789"
ADMIN = "admin-token-for-tests"


def metric_sum(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


@pytest.fixture(scope="module")
def observed(start_proxy, mock, tmp_path_factory):
    """A 2-worker proxy with a request log; 40 requests over fresh connections, both providers."""
    log_path = tmp_path_factory.mktemp("log") / "requests.jsonl"
    proxy = start_proxy("--workers", "2", "--log-file", str(log_path), "--admin-token", ADMIN)
    prometheus = None
    if require_prometheus():
        # Started first: Prometheus takes ~5 s before its first scrape, which overlaps the load.
        prometheus = start_prometheus([proxy.url.removeprefix("http://")],
                                      tmp_path_factory.mktemp("prom"), bearer_token=ADMIN)
    def send(i: int) -> None:  # a fresh client, so a fresh connection, per request
        if i % 2:
            client = anthropic.Anthropic(base_url=proxy.url, api_key=API_KEY, max_retries=0)
            if i % 4 == 1:
                client.messages.create(model="claude-opus-4-5", max_tokens=8,
                                       messages=[{"role": "user", "content": f"question {i}"}])
            else:
                with client.messages.stream(model="claude-opus-4-5", max_tokens=8,
                                            messages=[{"role": "user", "content": f"question {i}"}]) as s:
                    s.get_final_message()
        else:
            client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=API_KEY, max_retries=0)
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"q {i}"}])
        client.close()

    # Four at a time: both workers are busy accepting, so the requests spread over them.
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, range(40)))
    yield proxy, log_path, prometheus
    if prometheus:
        prometheus.stop()


def admin_get(proxy, path: str) -> httpx.Response:
    return httpx.get(f"{proxy.url}{path}", headers={"x-headroom-admin-token": ADMIN})


def test_metrics_sum_across_workers(observed):
    proxy, _, _ = observed
    text = admin_get(proxy, "/metrics").text
    assert metric_sum(text, "headroom_requests_total") == 40
    assert metric_sum(text, "headroom_latency_ms_count") == 40
    assert metric_sum(text, "headroom_latency_ms_sum") > 0
    assert metric_sum(text, "headroom_tokens_input_total") > 0
    assert metric_sum(text, "headroom_tokens_output_total") > 0
    assert re.search(r'headroom_requests_total\{[^}]*model="claude-opus-4-5"[^}]*\} 20', text)
    assert API_KEY not in text


def test_both_workers_served(observed):
    _proxy, log_path, _ = observed
    ids = [json.loads(line)["request_id"] for line in log_path.read_text().splitlines()]
    tags = {request_id[3:15] for request_id in ids}  # the per-process tag of the request id
    assert len(tags) == 2, "40 fresh connections should have reached both workers"


def test_request_log_has_one_line_per_request_and_no_secret(observed):
    _, log_path, _ = observed
    content = log_path.read_text()
    lines = content.splitlines()
    assert len(lines) == 40
    records = [json.loads(line) for line in lines]
    assert len({r["request_id"] for r in records}) == 40
    assert {r["provider"] for r in records} == {"anthropic", "openai"}
    assert all(r["status"] == 200 and r["input_tokens"] > 0 and r["output_tokens"] > 0 for r in records)
    assert sum(r["stream"] for r in records) == 10
    assert all(re.fullmatch(r"[0-9a-f]{16,64}", r["api_key_hash"] or "") for r in records) or all(
        r["api_key_hash"] is None for r in records)
    assert API_KEY not in content and "question 1" not in content
    assert "messages" not in records[0]


def test_prometheus_ingests_the_total(observed):
    _proxy, _, prometheus = observed
    assert prometheus is not None
    assert prometheus.wait_for_value("sum(headroom_requests_total)", 40, timeout=30) == 40


def test_admin_endpoints_require_the_token(observed):
    proxy, _, _ = observed
    for path in ("/stats", "/metrics", "/docs/openapi.json"):
        denied = httpx.get(f"{proxy.url}{path}")
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "admin_token_required"
        assert httpx.get(f"{proxy.url}{path}", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{proxy.url}{path}", headers={"authorization": f"Bearer {ADMIN}"}).status_code == 200
        assert admin_get(proxy, path).status_code == 200
    assert httpx.get(f"{proxy.url}/health").status_code == 200  # probes stay open


def test_openapi_describes_headroom_endpoints_only(observed):
    proxy, _, _ = observed
    spec = admin_get(proxy, "/docs/openapi.json").json()
    assert {"/health", "/stats", "/metrics"} <= set(spec["paths"])
    assert not any(path.startswith("/v1/messages") or "chat" in path for path in spec["paths"])
    assert httpx.get(f"{proxy.url}/docs", headers={"x-headroom-admin-token": ADMIN}).status_code == 404  # no UI


def test_stats_breakdowns_cover_both_workers(observed):
    proxy, _, _ = observed
    def flushed() -> dict | None:  # the other worker adds its figures at its next flush
        stats = admin_get(proxy, "/stats").json()
        return stats if stats["total_requests"] >= 40 else None

    stats = wait_for(flushed, timeout=10, interval=0.1, what="both workers' figures in /stats")
    assert stats["scope"] == "global" and stats["total_requests"] == 40
    assert stats["models"]["claude-opus-4-5"]["requests"] == 20
    assert stats["models"]["gpt-4o"]["requests"] == 20
    assert all(figures["input_tokens"] > 0 for figures in stats["models"].values())
    assert stats["latency_ms"]["samples"] == 40 and stats["ttfb_ms"]["samples"] == 10
    assert len(stats["recent_requests"]) == 40
    entry = stats["recent_requests"][0]
    assert set(entry) >= {"request_id", "model", "status", "latency_ms", "overhead_ms"}
    assert API_KEY not in json.dumps(stats)


def test_every_response_carries_request_id_and_overhead(proxy, fresh_mock):
    body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    anthropic_headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    plain = httpx.post(f"{proxy.url}/v1/messages", json=body, headers=anthropic_headers)
    streamed = httpx.post(f"{proxy.url}/v1/messages", json={**body, "stream": True}, headers=anthropic_headers)
    error = httpx.post(f"{proxy.url}/v1/messages", content=b"{", headers=anthropic_headers)
    missing = httpx.get(f"{proxy.url}/nowhere")
    health = httpx.get(f"{proxy.url}/health")
    for response in (plain, streamed, error, missing, health):
        assert response.headers["x-request-id"]
        assert float(response.headers["x-headroom-overhead-ms"]) >= 0
    assert plain.headers["x-request-id"] != streamed.headers["x-request-id"]
    # OpenAI's own request id is the one its support asks for: it is kept, ours rides alongside.
    oai = httpx.post(f"{proxy.url}/v1/chat/completions", json=body, headers={"authorization": "Bearer k"})
    assert oai.headers["x-request-id"].startswith("req_mock")
    assert oai.headers["x-headroom-request-id"].startswith("hr_")
    # A well-formed client request id is adopted.
    traced = httpx.post(f"{proxy.url}/v1/messages", json=body,
                        headers={**anthropic_headers, "x-request-id": "trace-42"})
    assert traced.headers["x-headroom-request-id"] == "trace-42"


def test_messages_are_logged_only_when_asked(start_proxy, fresh_mock, tmp_path):
    log_path = tmp_path / "with-messages.jsonl"
    proxy = start_proxy("--log-file", str(log_path), "--log-messages")
    httpx.post(f"{proxy.url}/v1/messages", headers={"x-api-key": API_KEY},
               json={"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "remember me"}]})
    wait_for(lambda: log_path.exists() and log_path.read_text(), what="the request log's first line")
    record = json.loads(log_path.read_text().splitlines()[0])
    assert "remember me" in json.dumps(record["messages"])
    assert API_KEY not in log_path.read_text()


def test_warns_when_exposed_without_admin_token():
    from headroom.config import ProxyConfig
    from headroom.serve import startup_warnings

    assert any("--admin-token" in w for w in startup_warnings(ProxyConfig(host="0.0.0.0")))
    assert startup_warnings(ProxyConfig(host="0.0.0.0", admin_token="t")) == []
    assert startup_warnings(ProxyConfig(host="127.0.0.1")) == []
