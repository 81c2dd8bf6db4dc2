"""Transparency: bytes, headers, encodings and timing of what crosses the proxy."""

from __future__ import annotations

import gzip
import json
import time

import httpx

ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01", "content-type": "application/json"}


def test_unchanged_body_is_forwarded_byte_for_byte(proxy, fresh_mock):
    # Odd spacing, key order, unicode escapes and raw unicode: any re-serialisation would show.
    raw = (
        '{ "model":"claude-sonnet-4-5" ,"max_tokens": 16,\n  "messages":[{"role":"user",'
        '"content":"caf\\u00e9 — naïve 🚀 \\"quoted\\""}], "metadata":{"z":1,"a":2.50}}'
    ).encode()
    response = httpx.post(f"{proxy.url}/v1/messages", content=raw, headers=ANTHROPIC_HEADERS)
    assert response.status_code == 200
    assert fresh_mock.last()["body"].encode("latin-1") == raw


def test_upstream_headers_and_body_come_back_unchanged(proxy, fresh_mock):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{proxy.url}/v1/messages?beta=true", json=body, headers=ANTHROPIC_HEADERS)
    assert response.headers["request-id"].startswith("req_mock")
    assert "anthropic-ratelimit-requests-remaining" in response.headers
    assert response.headers["x-mock-seen-query"] == "beta=true"
    assert response.json()["content"][0]["text"].startswith("mock reply: hi")


def test_hop_by_hop_headers_are_not_forwarded(proxy, fresh_mock):
    headers = {**ANTHROPIC_HEADERS, "connection": "keep-alive, x-secret-hop", "x-secret-hop": "1",
               "proxy-authorization": "Basic abc", "x-custom-trace": "trace-123"}
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    httpx.post(f"{proxy.url}/v1/messages", json=body, headers=headers)
    seen = fresh_mock.last()["headers"]
    assert seen["x-custom-trace"] == "trace-123"
    assert "x-secret-hop" not in seen and "proxy-authorization" not in seen


def test_compressed_request_body_is_decoded_and_its_encoding_header_dropped(proxy, fresh_mock):
    raw = json.dumps({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "zipped"}]}).encode()
    response = httpx.post(
        f"{proxy.url}/v1/messages", content=gzip.compress(raw),
        headers={**ANTHROPIC_HEADERS, "content-encoding": "gzip"}
    )
    assert response.status_code == 200
    seen = fresh_mock.last()
    assert seen["body"].encode("latin-1") == raw
    assert "content-encoding" not in seen["headers"]
    assert seen["headers"]["content-length"] == str(len(raw))


def test_unsupported_request_encoding_is_a_native_415(proxy, fresh_mock):
    response = httpx.post(f"{proxy.url}/v1/messages", content=b"xx",
                          headers={**ANTHROPIC_HEADERS, "content-encoding": "snappy"})
    assert response.status_code == 415
    assert response.json()["type"] == "error"
    assert fresh_mock.requests() == []


def test_compressed_upstream_answer_reaches_client_without_stale_encoding(proxy, fresh_mock):
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "gzip me"}]}
    with httpx.Client() as client:
        response = client.post(
            f"{proxy.url}/v1/messages", json=body,
            headers={**ANTHROPIC_HEADERS, "x-mock-gzip": "1", "accept-encoding": "identity"},
        )
    assert "content-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(response.content)
    assert json.loads(response.content)["content"][0]["text"].startswith("mock reply: gzip me")


def test_an_answer_in_an_encoding_headroom_cannot_decode_arrives_as_sent_and_labelled(proxy, fresh_mock):
    """Headroom asks for gzip or deflate only; an upstream that answers in another encoding
    anyway gets its bytes relayed untouched, with the header that says how to read them."""
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "opaque"}]}
    with httpx.Client() as client:
        response = client.post(f"{proxy.url}/v1/messages", json=body, headers={
            **ANTHROPIC_HEADERS, "x-mock-body-bytes": "3000", "x-mock-body-encoding": "x-opaque"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "x-opaque"
    assert len(response.content) == 3000 and json.loads(response.content) is not None


def test_stream_events_arrive_before_the_answer_is_complete(proxy, fresh_mock):
    body = {"model": "m", "max_tokens": 8, "stream": True, "messages": [{"role": "user", "content": "slow"}]}
    headers = {**ANTHROPIC_HEADERS, "x-mock-stream-delay-ms": "150", "x-mock-events": "4"}
    started = time.monotonic()
    arrivals = []
    with httpx.stream("POST", f"{proxy.url}/v1/messages", json=body, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_raw():
            arrivals.append((time.monotonic() - started, chunk))
    first_at, last_at = arrivals[0][0], arrivals[-1][0]
    # The stream has ~10 events 150 ms apart: relayed live, the first lands long before the last.
    assert last_at - first_at > 0.8
    events = b"".join(chunk for _, chunk in arrivals).split(b"\n\n")
    assert events[0].startswith(b"event: message_start")
    assert any(e.startswith(b"event: message_stop") for e in events)


def test_root_probe_answers_head_and_get(proxy):
    assert httpx.head(f"{proxy.url}/").status_code == 200
    assert httpx.get(f"{proxy.url}/").status_code == 200


def test_health_has_the_documented_shape(start_proxy):
    proxy = start_proxy()  # its own process, so the counters are known
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "count"}]}
    for _ in range(3):
        httpx.post(f"{proxy.url}/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    health = httpx.get(f"{proxy.url}/health").json()
    assert health == {
        "status": "healthy", "optimize": True,
        "stats": {"total_requests": 3, "tokens_saved": health["stats"]["tokens_saved"],
                  "savings_percent": health["stats"]["savings_percent"]},
    }
    assert isinstance(health["stats"]["tokens_saved"], int)
    assert isinstance(health["stats"]["savings_percent"], float)


def test_stats_break_requests_down(start_proxy):
    proxy = start_proxy("--no-cache")
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}
    httpx.post(f"{proxy.url}/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    httpx.post(f"{proxy.url}/v1/chat/completions", json=body, headers={"authorization": "Bearer k"})
    httpx.post(f"{proxy.url}/v1/messages", json=body, headers={**ANTHROPIC_HEADERS, "x-mock-status": "500"})
    stats = httpx.get(f"{proxy.url}/stats").json()
    assert stats["total_requests"] == 3
    assert stats["requests_by_provider"] == {"anthropic": 2, "openai": 1}
    assert stats["requests_by_status"] == {"200": 2, "500": 1}
    for window in ("latency_ms", "added_latency_ms"):
        assert stats[window]["samples"] == 3
        assert 0 <= stats[window]["p50"] <= stats[window]["p90"] <= stats[window]["p99"]
    assert stats["bytes_in"] > 0 and stats["bytes_out"] > 0


def test_upstream_cookies_are_relayed_but_never_replayed_for_another_caller(proxy, fresh_mock):
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    first = httpx.post(f"{proxy.url}/v1/messages", json=body,
                       headers={**ANTHROPIC_HEADERS, "x-mock-set-cookie": "session=alice-secret; Path=/"})
    assert first.headers["set-cookie"] == "session=alice-secret; Path=/"  # the client gets it
    httpx.post(f"{proxy.url}/v1/messages", json=body, headers={**ANTHROPIC_HEADERS, "x-api-key": "bob"})
    assert "cookie" not in fresh_mock.last()["headers"]  # the proxy did not keep it
