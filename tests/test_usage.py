"""Usage parsing, on real answers from the mock upstream (streamed and not)."""

from __future__ import annotations

import json

import httpx
import pytest

from headroom.proxy.sse import last_event_end
from headroom.proxy.usage import StreamUsage, ask_for_stream_usage, usage_from_body

BODY = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "count my tokens please"}]}


def _events_in_odd_chunks(raw: bytes, size: int = 7):
    """Feed the meter the way the relay does: whole events, cut out of arbitrary network chunks."""
    pending = b""
    for i in range(0, len(raw), size):
        pending += raw[i : i + size]
        cut = last_event_end(pending)
        if cut:
            yield pending[:cut]
            pending = pending[cut:]
    if pending:
        yield pending


@pytest.mark.parametrize("provider,path,headers", [
    ("anthropic", "/v1/messages", {"x-api-key": "k"}),
    ("openai", "/v1/chat/completions", {"authorization": "Bearer k"}),
])
def test_stream_and_body_usage_agree(mock, provider, path, headers):
    plain = httpx.post(f"{mock.url}{path}", json=BODY, headers=headers)
    expected = plain.json()["usage"]
    from_body = usage_from_body(provider, plain.content)
    assert from_body is not None

    stream_body = {**BODY, "stream": True}
    if provider == "openai":
        stream_body["stream_options"] = {"include_usage": True}
    raw = httpx.post(f"{mock.url}{path}", json=stream_body, headers=headers).content
    meter = StreamUsage(provider)
    passed_on = b"".join(meter.feed(events) for events in _events_in_odd_chunks(raw))
    assert passed_on == raw  # reading usage never changes the stream
    assert meter.usage is not None
    reported = [json.loads(line[5:]) for line in raw.split(b"\n") if line.startswith(b"data: {")]
    if provider == "anthropic":
        start = next(e["message"]["usage"] for e in reported if e["type"] == "message_start")
        delta = next(e["usage"] for e in reported if e["type"] == "message_delta")
        assert from_body.input_tokens == expected["input_tokens"]
        assert (meter.usage.input_tokens, meter.usage.output_tokens) == (start["input_tokens"], delta["output_tokens"])
    else:
        final = next(e["usage"] for e in reported if e.get("usage"))
        assert from_body.input_tokens == expected["prompt_tokens"]
        assert (meter.usage.input_tokens, meter.usage.output_tokens) == (
            final["prompt_tokens"], final["completion_tokens"])
    assert meter.usage.output_tokens > 0 and from_body.output_tokens == meter.usage.output_tokens


def test_anthropic_cache_figures_are_kept_apart():
    payload = (b'{"usage":{"input_tokens":12,"cache_read_input_tokens":3000,'
               b'"cache_creation_input_tokens":500,"output_tokens":40}}')
    usage = usage_from_body("anthropic", payload)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens, usage.output_tokens) == (
        12, 3000, 500, 40)
    assert usage.total_input_tokens == 3512


def test_openai_cached_prompt_tokens_are_split_out():
    payload = b'{"usage":{"prompt_tokens":1000,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":800}}}'
    usage = usage_from_body("openai", payload)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (200, 800, 5)


def test_no_usage_or_garbage_is_not_an_error():
    assert usage_from_body("openai", b"not json") is None
    assert usage_from_body("openai", b'{"usage": {broken') is None
    assert usage_from_body("anthropic", b'{"usage": "weird"}') is None
    meter = StreamUsage("openai")
    assert meter.feed(b'data: {"usage": {nul\n\n') == b'data: {"usage": {nul\n\n'
    assert meter.usage is None


def test_usage_chunk_headroom_asked_for_is_removed_again():
    body = {"model": "gpt-4o", "stream": True, "messages": []}
    assert ask_for_stream_usage(body) and body["stream_options"] == {"include_usage": True}
    assert not ask_for_stream_usage(body)  # already asked
    assert not ask_for_stream_usage({"stream": False})
    events = (b'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
              b'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}\n\n'
              b"data: [DONE]\n\n")
    meter = StreamUsage("openai", strip_usage_chunk=True)
    passed = meter.feed(events)
    assert passed == (b'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
                      b"data: [DONE]\n\n")
    assert (meter.usage.input_tokens, meter.usage.output_tokens) == (9, 2)
