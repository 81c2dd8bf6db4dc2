"""Tests of testkit/mock_upstream.py, the project's only fake upstream.

Every proxy test trusts this mock to speak the providers' wire format, so it
is checked here with the official SDKs (which parse the SSE framing strictly)
as well as with raw HTTP for the control headers and the recording API.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from testkit import ROOT
from testkit.waiting import wait_for

ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "testkit.mock_upstream", "--port", "0"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        line = proc.stdout.readline() if ready else ""
        assert "listening on " in line, f"mock did not start: {line!r}"
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def http(mock_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock_url, timeout=5) as client:
        client.post("/_mock/reset")
        yield client


def test_anthropic_non_streaming_echoes_request(http: httpx.Client) -> None:
    body = {"model": "claude-test", "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "What is up?"}]}]}
    r = http.post("/v1/messages?beta=true", json=body, headers=ANTHROPIC_HEADERS)
    assert r.status_code == 200
    assert r.headers["request-id"].startswith("req_")
    assert r.headers["anthropic-ratelimit-requests-remaining"]
    assert r.headers["x-mock-seen-query"] == "beta=true"
    msg = r.json()
    assert msg["type"] == "message" and msg["model"] == "claude-test"
    assert msg["content"] == [{"type": "text", "text": "mock reply: What is up?"}]
    assert msg["stop_reason"] == "end_turn"
    assert msg["usage"]["input_tokens"] == len(r.request.content) // 4


def test_anthropic_sdk_streams_text_and_tool_use(mock_url: str) -> None:
    client = anthropic.Anthropic(base_url=mock_url, api_key="sk-ant-test", max_retries=0)
    with client.messages.stream(
        model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "stream me"}],
        extra_headers={"x-mock-events": "5"},
    ) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(deltas) == 5 and "".join(deltas) == "mock reply: stream me"
    assert final.content[0].text == "mock reply: stream me"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0

    with client.messages.stream(
        model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "weather?"}],
        tools=[{"name": "get_weather", "input_schema": WEATHER_SCHEMA}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    block = final.content[0]
    assert block.type == "tool_use" and block.id.startswith("toolu_")
    assert block.name == "get_weather" and block.input == {"city": "x"}


def test_anthropic_tool_result_round_trip(http: httpx.Client) -> None:
    body = {"model": "m", "max_tokens": 5, "tools": [{"name": "t", "input_schema": WEATHER_SCHEMA}],
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}]},
                {"role": "user",
                 "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny 21C"}]},
            ]}
    msg = http.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS).json()
    assert msg["stop_reason"] == "end_turn"
    assert "sunny 21C" in msg["content"][0]["text"]


def test_openai_sdk_stream_with_usage_and_tool_round_trip(mock_url: str) -> None:
    client = openai.OpenAI(base_url=mock_url + "/v1", api_key="sk-test", max_retries=0)
    chunks = list(client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hello openai"}],
        stream=True, stream_options={"include_usage": True},
    ))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "mock reply: hello openai"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0

    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]
    messages: list = [{"role": "user", "content": "weather?"}]
    first = client.chat.completions.create(model="gpt-test", messages=messages, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "x"}
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "rainy 9C"}]
    second = client.chat.completions.create(model="gpt-test", messages=messages, tools=tools)
    assert "rainy 9C" in second.choices[0].message.content

    streamed = list(client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "w?"}], tools=tools, stream=True))
    args = "".join(c.choices[0].delta.tool_calls[0].function.arguments or ""
                   for c in streamed if c.choices and c.choices[0].delta.tool_calls)
    assert json.loads(args) == {"city": "x"}
    assert streamed[-1].choices[0].finish_reason == "tool_calls"


def test_error_injection_native_bodies(http: httpx.Client) -> None:
    r = http.post("/v1/messages", json={}, headers={**ANTHROPIC_HEADERS, "x-mock-status": "429"})
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "rate_limit_error"
    r = http.post("/v1/messages", json={}, headers={"x-mock-status": "529"})
    assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error"
    r = http.post("/v1/chat/completions", json={}, headers={"x-mock-status": "500"})
    assert r.status_code == 500
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(anthropic.RateLimitError):
        anthropic.Anthropic(base_url=str(http.base_url), api_key="k", max_retries=0).messages.create(
            model="m", max_tokens=1, messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-mock-status": "429"})


def test_recording_stats_gzip_models_and_echo(http: httpx.Client) -> None:
    raw = '{"model":"m","messages":[{"role":"user","content":"caf\u00e9"}]}'.encode()
    r = http.post("/v1/chat/completions", content=raw, headers={"x-mock-gzip": "1", "x-custom": "yes"})
    assert r.headers["content-encoding"] == "gzip"
    assert r.json()["choices"][0]["message"]["content"] == "mock reply: caf\u00e9"  # httpx inflated it
    assert http.get("/v1/models", headers=ANTHROPIC_HEADERS).json()["has_more"] is False
    assert http.get("/v1/models").json()["object"] == "list"
    assert http.get("/v1/models/gpt-4o").json()["id"] == "gpt-4o"
    echoed = http.patch("/v1/batches/b1?limit=2").json()
    assert echoed == {"method": "PATCH", "path": "/v1/batches/b1", "query": "limit=2"}
    assert http.post("/v1/messages/count_tokens", content=b"x" * 40).json() == {"input_tokens": 10}

    recorded = http.get("/_mock/requests").json()
    assert len(recorded) == 6
    first = recorded[0]
    assert first["method"] == "POST" and first["path"] == "/v1/chat/completions"
    assert first["headers"]["x-custom"] == "yes"
    assert first["body"].encode("latin-1") == raw
    assert http.get("/_mock/stats").json()["requests"] == 6
    http.post("/_mock/reset")
    assert http.get("/_mock/requests").json() == []


def test_break_after_aborts_the_stream(http: httpx.Client) -> None:
    headers = {"x-mock-break-after": "4", "x-mock-events": "10"}
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):
        with http.stream("POST", "/v1/messages", json={"stream": True}, headers=headers) as r:
            assert r.status_code == 200
            for chunk in r.iter_bytes():
                received += chunk
    assert received.count(b"event: ") == 4 and b"message_stop" not in received
    stats = http.get("/_mock/stats").json()
    assert stats["streams_started"] == 1 and stats["streams_completed"] == 0


def test_client_disconnect_counts_as_cancelled(http: httpx.Client) -> None:
    headers = {"x-mock-stream-delay-ms": "20", "x-mock-events": "50"}
    with http.stream("POST", "/v1/chat/completions", json={"stream": True}, headers=headers) as r:
        next(r.iter_bytes())  # first chunk, then hang up mid-stream
    stats = wait_for(lambda: (found := http.get("/_mock/stats").json())["streams_cancelled"] and found, timeout=3,
                     what="the stream counted as cancelled")
    assert stats["streams_cancelled"] == 1 and stats["streams_completed"] == 0


def test_delay_before_headers(http: httpx.Client) -> None:
    start = time.monotonic()
    http.get("/v1/models", headers={"x-mock-delay-ms": "150"})
    assert time.monotonic() - start >= 0.15


def test_stream_error_after_is_raised_by_sdks(mock_url: str) -> None:
    headers = {"x-mock-stream-error-after": "4"}
    client = anthropic.Anthropic(base_url=mock_url, api_key="k", max_retries=0)
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        with client.messages.stream(model="m", max_tokens=5, extra_headers=headers,
                                    messages=[{"role": "user", "content": "x"}]) as stream:
            list(stream.text_stream)
    oai = openai.OpenAI(base_url=mock_url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIError, match="mid-stream"):
        list(oai.chat.completions.create(model="m", stream=True, extra_headers=headers,
                                         messages=[{"role": "user", "content": "x"}]))


def test_tool_arguments_header_steers_the_call_in_every_format(http: httpx.Client) -> None:
    steer = {"x-mock-tool-arguments": json.dumps({"city": "Oslo", "days": 3})}
    anthropic = http.post("/v1/messages", headers={**ANTHROPIC_HEADERS, **steer}, json={
        "model": "m", "max_tokens": 5, "tools": [{"name": "t", "input_schema": WEATHER_SCHEMA}],
        "messages": [{"role": "user", "content": "weather?"}]}).json()
    assert anthropic["content"][-1]["input"] == {"city": "Oslo", "days": 3}
    chat = http.post("/v1/chat/completions", headers=steer, json={
        "model": "m", "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"type": "function", "function": {"name": "t", "parameters": WEATHER_SCHEMA}}]}).json()
    assert json.loads(chat["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Oslo", "days": 3}
    responses = http.post("/v1/responses", headers=steer, json={
        "model": "m", "input": "weather?", "tools": [{"type": "function", "name": "t", "parameters": WEATHER_SCHEMA}]})
    assert json.loads(responses.json()["output"][0]["arguments"]) == {"city": "Oslo", "days": 3}
    # Without the header: the schema's required strings, each "x".
    plain = http.post("/v1/responses", json={
        "model": "m", "input": "weather?", "tools": [{"type": "function", "name": "t", "parameters": WEATHER_SCHEMA}]})
    assert json.loads(plain.json()["output"][0]["arguments"]) == {"city": "x"}


def test_the_careful_model_calls_the_retrieval_tool_by_the_name_it_is_declared_under() -> None:
    """The proxy's ``headroom_retrieve``, or ``headroom mcp``'s as Claude Code names it (loaded
    first through ToolSearch when Claude Code defers it); the proxy's wins when both are there."""
    from testkit import retrieving_anthropic as careful

    mcp = "mcp__headroom__headroom_retrieve"
    marker = "[headroom: 90 of 100 lines omitted (6-95); headroom_retrieve key=0123456789abcdef query=\"…\"]"
    ids = iter(f"toolu_{n}" for n in range(100))

    def move(tools: list[dict], messages: list[dict] | None = None) -> dict:
        req = {"tools": tools, "messages": [
            {"role": "user", "content": [{"type": "text", "text": f"<system-reminder>\n{mcp}\n</system-reminder>"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_log", "name": "Bash", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_log", "content": marker}]},
            *(messages or [])]}
        return careful.reply_blocks(req, "ZEBRA-4417", {}, lambda: next(ids))[-1]

    bash, search = {"name": "Bash"}, {"name": "ToolSearch"}
    assert move([bash, {"name": mcp}])["name"] == mcp
    assert move([bash, {"name": mcp}, {"name": "headroom_retrieve"}])["name"] == "headroom_retrieve"
    assert move([bash])["text"] == "Not found: ZEBRA-4417"  # no retrieval tool: nothing to call
    load = move([bash, search, {"name": mcp, "defer_loading": True}])
    assert (load["name"], load["input"]) == ("ToolSearch", {"query": f"select:{mcp}"})
    loaded = [{"role": "assistant", "content": [load]}, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": load["id"], "content": [{"type": "tool_reference", "tool_name": mcp}]}]}]
    call = move([bash, search, {"name": mcp, "defer_loading": True}], loaded)
    assert (call["name"], call["input"]) == (mcp, {"key": "0123456789abcdef", "query": "ZEBRA-4417"})
    assert move([bash, search], loaded)["text"] == "Not found: ZEBRA-4417"  # loaded once: never asked twice
