"""Every failure ends in the provider's native error shape, and nothing hangs."""

from __future__ import annotations

import time

import aiohttp
import anthropic
import httpx
import openai
import pytest

from testkit.ports import free_port
from testkit.waiting import async_wait_for

ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01", "content-type": "application/json"}
OPENAI_HEADERS = {"authorization": "Bearer sk-test", "content-type": "application/json"}
SMALL = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def assert_anthropic_error(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    assert body["error"]["message"]


def assert_openai_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"] and error["type"]
    assert set(error) >= {"message", "type", "param", "code"}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b"\xff\xfe"])
def test_malformed_or_non_object_body_is_400(proxy, fresh_mock, raw):
    assert_anthropic_error(httpx.post(f"{proxy.url}/v1/messages", content=raw, headers=ANTHROPIC_HEADERS),
                           400, "invalid_request_error")
    assert_openai_error(httpx.post(f"{proxy.url}/v1/chat/completions", content=raw, headers=OPENAI_HEADERS), 400)
    assert fresh_mock.requests() == []  # nothing half-parsed reached the upstream


def test_body_over_limit_is_413_in_both_shapes(start_proxy, fresh_mock):
    proxy = start_proxy("--max-body-mb", "0.01")
    big = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x" * 20_000}]}
    assert_anthropic_error(httpx.post(f"{proxy.url}/v1/messages", json=big, headers=ANTHROPIC_HEADERS),
                           413, "request_too_large")
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json=big, headers=OPENAI_HEADERS)
    assert_openai_error(response, 413)
    assert "0.01 MiB" in response.json()["error"]["message"]
    assert fresh_mock.requests() == []
    # A small request on the same proxy still goes through.
    assert httpx.post(f"{proxy.url}/v1/messages", json=SMALL, headers=ANTHROPIC_HEADERS).status_code == 200


def test_unreachable_upstream_is_502(start_proxy):
    proxy = start_proxy(upstream=f"http://127.0.0.1:{free_port()}")
    client = anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502
    assert info.value.body["error"]["type"] == "api_error"
    oai = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502


def test_slow_upstream_is_504(start_proxy, fresh_mock):
    proxy = start_proxy("--request-timeout", "0.5")
    started = time.monotonic()
    response = httpx.post(f"{proxy.url}/v1/messages", json=SMALL,
                          headers={**ANTHROPIC_HEADERS, "x-mock-delay-ms": "3000"}, timeout=10)
    assert_anthropic_error(response, 504, "timeout_error")
    assert time.monotonic() - started < 2.5
    assert_openai_error(httpx.post(f"{proxy.url}/v1/chat/completions", json=SMALL,
                                   headers={**OPENAI_HEADERS, "x-mock-delay-ms": "3000"}, timeout=10), 504)


def test_an_answer_that_breaks_off_or_stalls_mid_body_is_a_native_502_or_504(start_proxy, fresh_mock):
    """A non-streamed answer is read whole: one whose body stops short of its Content-Length
    (the connection dropped) is a 502, one whose body stalls past --request-timeout a 504,
    each in the provider's own shape, and the proxy serves the next request."""
    proxy = start_proxy("--request-timeout", "0.5", "--no-cache")
    cut = {"x-mock-body-bytes": "1000", "x-mock-declared-length": "100000"}
    response = httpx.post(f"{proxy.url}/v1/messages", json=SMALL, headers={**ANTHROPIC_HEADERS, **cut}, timeout=10)
    assert_anthropic_error(response, 502, "api_error")
    assert "broke off" in response.json()["error"]["message"]
    started = time.monotonic()
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json=SMALL, timeout=10,
                          headers={**OPENAI_HEADERS, **cut, "x-mock-stall-ms": "3000"})
    assert_openai_error(response, 504)
    assert "did not finish its answer in time" in response.json()["error"]["message"]
    assert time.monotonic() - started < 2.5
    assert httpx.post(f"{proxy.url}/v1/messages", json=SMALL, headers=ANTHROPIC_HEADERS, timeout=10).status_code == 200


def test_stalled_stream_ends_with_native_error_event(start_proxy, fresh_mock):
    proxy = start_proxy("--request-timeout", "0.5")
    body = {**SMALL, "stream": True}
    response = httpx.post(f"{proxy.url}/v1/messages", json=body, timeout=10,
                          headers={**ANTHROPIC_HEADERS, "x-mock-stream-delay-ms": "2000"})
    events = response.content.split(b"\n\n")
    assert events[0].startswith(b"event: message_start")
    assert any(e.startswith(b"event: error") and b'"api_error"' in e for e in events)


def test_broken_anthropic_stream_raises_in_the_sdk(proxy, fresh_mock):
    client = anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0)
    received = []
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}],
                                    extra_headers={"x-mock-break-after": "3", "x-mock-events": "10"}) as stream:
            for event in stream:
                received.append(event.type)
    assert received[0] == "message_start"
    assert "broke off" in str(info.value)
    assert info.value.body["error"]["type"] == "api_error"


def test_broken_openai_stream_raises_in_the_sdk(proxy, fresh_mock):
    client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="k", max_retries=0)
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True,
            extra_headers={"x-mock-break-after": "2", "x-mock-events": "10"},
        ):
            received.append(chunk)
    assert len(received) == 2
    assert "broke off" in str(info.value)


def test_raw_broken_stream_is_well_formed_and_closed(proxy, fresh_mock):
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json={**SMALL, "stream": True}, timeout=10,
                          headers={**OPENAI_HEADERS, "x-mock-break-after": "2", "x-mock-events": "10"})
    events = [e for e in response.content.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events)  # no half event before the error
    assert b'"error"' in events[-1] and b"[DONE]" not in response.content


async def test_client_disconnect_cancels_the_upstream_stream(proxy, fresh_mock):
    body = {**SMALL, "stream": True}
    headers = {**ANTHROPIC_HEADERS, "x-mock-stream-delay-ms": "100", "x-mock-events": "100"}
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{proxy.url}/v1/messages", json=body, headers=headers)
        first = await response.content.readany()
        assert first.startswith(b"event: message_start")
        response.close()  # hang up mid-stream
    async def cancelled() -> dict | None:
        stats = fresh_mock.stats()
        return stats if stats["streams_cancelled"] >= 1 else None

    stats = await async_wait_for(cancelled, timeout=5, interval=0.1, what="the upstream stream cancelled")
    assert stats["streams_cancelled"] == 1
    assert stats["streams_completed"] == 0
    # The proxy is still healthy and its next request works.
    async with httpx.AsyncClient() as client:
        after = await client.post(f"{proxy.url}/v1/messages", json=SMALL, headers=ANTHROPIC_HEADERS)
    assert after.status_code == 200


def test_unknown_route_and_method_are_native_errors(proxy):
    response = httpx.get(f"{proxy.url}/not-here", headers={"x-api-key": "k"})
    assert_anthropic_error(response, 404, "not_found_error")
    assert_openai_error(httpx.get(f"{proxy.url}/v1/compress", headers=OPENAI_HEADERS), 405)  # Headroom's own
