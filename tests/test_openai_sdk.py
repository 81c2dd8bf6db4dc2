"""The real OpenAI SDK through the proxy."""

from __future__ import annotations

import json

import openai
import pytest


@pytest.fixture
def client(proxy):
    return openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-openai-test-key", max_retries=0)


def test_non_streaming_completion(client, fresh_mock):
    completion = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Name a prime number"}]
    )
    assert completion.choices[0].message.content.startswith("mock reply: Name a prime number")
    assert completion.usage.prompt_tokens > 0
    seen = fresh_mock.last()
    assert seen["path"] == "/v1/chat/completions"
    assert seen["headers"]["authorization"] == "Bearer sk-openai-test-key"


def test_streaming_completion_with_usage(client, fresh_mock):
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "stream please"}], stream=True,
        stream_options={"include_usage": True}, extra_headers={"x-mock-events": "4"},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("mock reply: stream please")
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 4
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_round_trip(client, fresh_mock, stream):
    tools = [{"type": "function", "function": {
        "name": "lookup_order", "parameters": {
            "type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    }}]
    messages = [{"role": "user", "content": "Where is my order?"}]
    if stream:
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools, stream=True))
        deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        call_id = next(tc.id for tc in deltas if tc.id)
        name = next(tc.function.name for tc in deltas if tc.function and tc.function.name)
        arguments = "".join(tc.function.arguments or "" for tc in deltas if tc.function)
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
    else:
        first = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
        assert first.choices[0].finish_reason == "tool_calls"
        call = first.choices[0].message.tool_calls[0]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
    assert name == "lookup_order" and json.loads(arguments) == {"order_id": "x"}

    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "shipped on 2026-11-20"},
    ]
    second = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    assert "shipped on 2026-11-20" in second.choices[0].message.content


def test_error_is_relayed_in_openai_shape(client, fresh_mock):
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-mock-status": "429"}
        )
    assert info.value.status_code == 429
    assert info.value.body["type"] == "rate_limit_error" or info.value.body.get("code")
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.response.headers["x-request-id"].startswith("req_mock")


def test_models_passthrough_goes_to_openai_shape(client, fresh_mock):
    models = client.models.list()
    assert models.data
    seen = fresh_mock.last()
    assert seen["path"] == "/v1/models" and "x-api-key" not in seen["headers"]


def test_unversioned_chat_path(proxy, fresh_mock):
    client = openai.OpenAI(base_url=proxy.url, api_key="sk-openai-test-key", max_retries=0)
    completion = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "bare path"}])
    assert completion.choices[0].message.content.startswith("mock reply: bare path")
    assert fresh_mock.last()["path"] == "/v1/chat/completions"
