"""The real Anthropic SDK through the proxy: nothing it relies on may change."""

from __future__ import annotations

import anthropic
import pytest

MODEL = "claude-opus-4-5"


@pytest.fixture
def client(proxy):
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test-key", max_retries=0)


def test_non_streaming_message(client, fresh_mock):
    message = client.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    assert message.content[0].text.startswith("mock reply: What is the capital of France?")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    seen = fresh_mock.last()
    assert seen["path"] == "/v1/messages"
    # SDK versions differ in which header carries the key; either must arrive unchanged.
    credentials = seen["headers"].get("x-api-key") or seen["headers"]["authorization"]
    assert credentials.endswith("sk-ant-test-key")


def test_streaming_message_delivers_every_event(client, fresh_mock):
    with client.messages.stream(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "stream me"}],
        extra_headers={"x-mock-events": "5"},
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(texts) == 5
    assert "".join(texts) == final.content[0].text
    assert final.content[0].text.startswith("mock reply: stream me")
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_round_trip(client, fresh_mock, stream):
    tools = [{
        "name": "get_weather", "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with client.messages.stream(model=MODEL, max_tokens=64, tools=tools, messages=messages) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(model=MODEL, max_tokens=64, tools=tools, messages=messages)
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "x"}

    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}]},
    ]
    second = client.messages.create(model=MODEL, max_tokens=64, tools=tools, messages=messages)
    assert "sunny, 21C" in second.content[0].text
    forwarded = fresh_mock.last()["body"]
    assert call.id in forwarded and "sunny, 21C" in forwarded


def test_rate_limit_error_is_relayed_with_status_shape_and_headers(client, fresh_mock):
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-mock-status": "429"},
        )
    err = info.value
    assert err.status_code == 429
    assert err.body["type"] == "error" and err.body["error"]["type"] == "rate_limit_error"
    assert err.response.headers["retry-after"] == "7"
    assert err.response.headers["request-id"].startswith("req_mock")


def test_overloaded_error_is_relayed(client, fresh_mock):
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-mock-status": "529"},
        )
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"


def test_count_tokens_passthrough(client, fresh_mock):
    result = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "count me"}])
    assert result.input_tokens > 0
    assert fresh_mock.last()["path"] == "/v1/messages/count_tokens"


def test_models_passthrough(client, fresh_mock):
    listed = client.models.list()
    ids = [model.id for model in listed.data]
    assert ids
    one = client.models.retrieve(ids[0])
    assert one.id == ids[0]
    assert fresh_mock.last()["path"] == f"/v1/models/{ids[0]}"


def test_beta_query_and_headers_reach_upstream_unchanged(client, fresh_mock):
    beta = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27"
    client.messages.create(
        model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": beta, "x-app": "cli", "user-agent": "claude-cli/2.1.197 (external, sdk-cli)"},
        extra_query={"beta": "true"},
    )
    seen = fresh_mock.last()
    assert seen["query"] == "beta=true"
    assert seen["headers"]["anthropic-beta"] == beta
    assert seen["headers"]["x-app"] == "cli"
    assert seen["headers"]["user-agent"] == "claude-cli/2.1.197 (external, sdk-cli)"
    assert seen["headers"]["anthropic-version"] == client.default_headers["anthropic-version"]
