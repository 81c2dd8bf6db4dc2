"""The OpenAI Responses API (``/v1/responses``) through the proxy, driven by the real ``openai`` SDK.

Same path as Chat Completions: caller identity, response cache, limits, budget, compression
of ``function_call_output`` items, usage and cost in /stats, /metrics and the log.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from headroom.formats.base import INPUT_SCHEMA, TOOL_DESCRIPTION, TOOL_NAME
from testkit.corpus.cases import orders_api
from testkit.waiting import wait_for

API_KEY = "sk-responses-test-key"
TOOLS = [{"type": "function", "name": "lookup_order", "description": "Look an order up.",
          "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                         "required": ["order_id"]}}]
RETRIEVAL_TOOL = {"type": "function", "name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": INPUT_SCHEMA}
USAGE = {"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 800}, "output_tokens": 50,
         "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 1050}


def client_for(proxy, base: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy.url}{base}", api_key=API_KEY, max_retries=0)


@pytest.fixture
def client(proxy):
    return client_for(proxy)


def test_non_streaming_create(client, fresh_mock):
    response = client.responses.create(model="gpt-4o", input="Name a prime number")
    assert response.output_text.startswith("mock reply: Name a prime number")
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    seen = fresh_mock.last()
    assert seen["path"] == "/v1/responses"
    assert seen["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert "stream_options" not in json.loads(seen["body"])


def test_stream_helper_and_raw_stream(client, fresh_mock):
    with client.responses.stream(model="gpt-4o", input="stream please",
                                 extra_headers={"x-mock-events": "4"}) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) == 4 and "".join(deltas).startswith("mock reply: stream please")
    assert final.output_text == "".join(deltas) and final.usage.output_tokens > 0

    events = list(client.responses.create(model="gpt-4o", input="raw stream", stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    sent = json.loads(fresh_mock.last()["body"])
    assert "stream_options" not in sent  # the Responses API reports usage in response.completed anyway


def test_function_call_then_compressed_output_resent_byte_for_byte(proxy, client, fresh_mock):
    case = orders_api()
    first = client.responses.create(model="gpt-4.1", tools=TOOLS, input=[
        {"role": "user", "content": case.question}])
    call = first.output[0]
    assert call.type == "function_call" and call.name == "lookup_order"
    assert json.loads(call.arguments) == {"order_id": "x"}

    base = {
        "model": "gpt-4.1", "instructions": "You are an operations assistant." * 100, "tools": TOOLS,
        "prompt_cache_key": "conv-7", "store": False, "include": ["reasoning.encrypted_content"],
    }
    developer = {"type": "message", "role": "developer", "content": [{"type": "input_text",
                                                                       "text": "Codex rules. " * 400}]}
    items = [
        developer,
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": case.question}]},
        {"type": "function_call", "id": "fc_123", "call_id": call.call_id, "name": call.name,
         "arguments": call.arguments},
        {"type": "function_call_output", "id": "fco_456", "call_id": call.call_id, "output": case.content},
    ]
    body = {**base, "input": items}
    second = httpx.post(f"{proxy.url}/v1/responses", json=body,
                        headers={"authorization": f"Bearer {API_KEY}"}, timeout=30)
    assert second.status_code == 200, second.text
    assert int(second.headers["x-headroom-tokens-saved"]) > 0
    assert second.json()["output"][0]["content"][0]["text"].startswith("mock reply: tool result:")
    received = fresh_mock.last_body()
    sent = json.loads(received)
    output = sent["input"][3]["output"]
    assert len(output) < len(case.content) / 2
    for needle in case.answers:
        assert needle in output, needle
    for key in base:  # instructions, tools, prompt_cache_key, store, include
        expected = [*body[key], RETRIEVAL_TOOL] if key == "tools" else body[key]  # the retrieval tool, appended
        assert sent[key] == expected, key
    assert sent["input"][:3] == items[:3] and sent["input"][3]["id"] == "fco_456"
    assert len(second.headers["x-mock-tool-results-sha256"]) == 16  # the mock's prefix receipt: one output

    # The next turn re-sends the same output: byte for byte what went upstream before.
    items2 = [*items, {"type": "message", "role": "assistant", "content": [
        {"type": "output_text", "text": second.json()["output"][0]["content"][0]["text"]}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "And the customer?"}]}]
    third = httpx.post(f"{proxy.url}/v1/responses", json={**base, "input": items2},
                       headers={"authorization": f"Bearer {API_KEY}"}, timeout=30)
    assert third.status_code == 200
    again = fresh_mock.last_body()
    earlier = json.dumps(sent["input"][3], ensure_ascii=False, separators=(",", ":")).encode()
    assert earlier in again
    assert json.loads(again)["input"][5]["content"][0]["text"] == "And the customer?"


def test_previous_response_id_compresses_the_new_items(client, proxy, fresh_mock):
    case = orders_api()
    body = {"model": "gpt-4.1", "previous_response_id": "resp_earlier", "input": [
        {"type": "function_call_output", "call_id": "call_1", "output": case.content}]}
    answer = httpx.post(f"{proxy.url}/v1/responses", json=body, headers={"authorization": f"Bearer {API_KEY}"})
    assert answer.status_code == 200
    sent = json.loads(fresh_mock.last_body())
    assert sent["previous_response_id"] == "resp_earlier"
    assert len(sent["input"][0]["output"]) < len(case.content)


def test_unversioned_path_and_passthrough(proxy, fresh_mock):
    bare = client_for(proxy, base="")
    response = bare.responses.create(model="gpt-4o", input="bare path")
    assert response.output_text.startswith("mock reply: bare path")
    assert fresh_mock.last()["path"] == "/v1/responses"
    client = client_for(proxy)
    retrieved = client.responses.retrieve("resp_abc")
    assert retrieved.id == "resp_abc" and fresh_mock.last()["path"] == "/v1/responses/resp_abc"
    client.responses.input_items.list("resp_abc")
    assert fresh_mock.last()["path"] == "/v1/responses/resp_abc/input_items"


def test_broken_stream_ends_with_the_responses_error_event(proxy, client, fresh_mock):
    raw = httpx.post(f"{proxy.url}/v1/responses", json={"model": "gpt-4o", "input": "hi", "stream": True},
                     headers={"authorization": f"Bearer {API_KEY}", "x-mock-break-after": "4"}, timeout=30)
    last = raw.text.strip().split("\n\n")[-1]
    assert last.startswith("event: error\ndata: ")
    error = json.loads(last.split("data: ", 1)[1])
    assert error["type"] == "error" and error["code"] == "stream_interrupted" and error["message"]
    assert error["sequence_number"] == 4 and error["param"] is None

    with pytest.raises(openai.APIError) as info:
        list(client.responses.create(model="gpt-4o", input="hi", stream=True,
                                     extra_headers={"x-mock-break-after": "4"}))
    assert "before it was complete" in info.value.message


@pytest.fixture(scope="module")
def accounted(start_proxy, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("responses-log") / "requests.jsonl"
    return start_proxy("--log-file", str(log_path)), log_path


def read_log(log_path, at_least: int) -> list[dict]:
    def records() -> list[dict]:
        found = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
        return found if len(found) >= at_least else []

    return wait_for(records, what=f"{at_least} request-log lines")


def test_usage_cost_stats_metrics_log_and_cache(accounted, mock):
    proxy, log_path = accounted
    client = client_for(proxy)
    headers = {"x-mock-usage": json.dumps(USAGE)}
    client.responses.create(model="gpt-4o", input="account me", extra_headers=headers)
    with client.responses.stream(model="gpt-4o", input="account my stream", extra_headers=headers) as s:
        s.get_final_response()
    # The same stream again: a cache hit, replayed as the same events. The answer is stored
    # just behind the response (with the log line, then a batched write 10 ms later).
    assert len(read_log(log_path, 2)) == 2
    time.sleep(0.5)  # kept: the store write is not visible from outside, and a probe request would count
    with client.responses.with_streaming_response.create(
            model="gpt-4o", input="account my stream", stream=True, extra_headers=headers) as replay:
        assert replay.headers["x-headroom-cache"] == "hit"
        replayed = b"".join(replay.iter_bytes())
    assert replayed.count(b"event: response.output_text.delta") == 3 and b"response.completed" in replayed

    records = read_log(log_path, 3)
    assert [r["path"] for r in records] == ["/v1/responses"] * 3
    for record in records[:2]:
        assert record["provider"] == "openai"
        assert (record["input_tokens"], record["cache_read_tokens"], record["output_tokens"]) == (200, 800, 50)
        assert record["cost_usd"] > 0 and record["model"] == "gpt-4o"
    assert records[1]["stream"] is True and records[2]["cache"] == "hit"

    def flushed() -> dict | None:
        stats = httpx.get(f"{proxy.url}/stats").json()
        return stats if stats["total_requests"] >= 3 else None

    stats = wait_for(flushed, interval=0.1, what="three requests in /stats")
    assert stats["requests_by_provider"]["openai"] == 3
    assert stats["models"]["gpt-4o"]["input_tokens"] >= 400
    assert stats["usd"]["by_provider"]["openai"]["spent"] > 0
    metrics = httpx.get(f"{proxy.url}/metrics").text
    assert 'provider="openai"' in metrics


def test_rate_limit_and_budget_are_native_openai_429s(start_proxy, fresh_mock):
    limited = client_for(start_proxy("--rpm", "1", "--no-cache"))
    limited.responses.create(model="gpt-4o", input="one")
    with pytest.raises(openai.RateLimitError) as info:
        limited.responses.create(model="gpt-4o", input="two")
    assert info.value.code == "rate_limit_exceeded" and info.value.response.headers["retry-after"]

    broke = client_for(start_proxy("--budget", "0.000001", "--no-cache"))
    with pytest.raises(openai.RateLimitError) as info:
        broke.responses.create(model="gpt-4o", input="expensive", max_output_tokens=4000)
    assert info.value.code == "insufficient_quota"
    assert info.value.response.headers["x-should-retry"] == "false"
    assert fresh_mock.requests()[-1]["body"].find("expensive") < 0  # never reached the upstream


def test_streamed_function_call_and_custom_tool_output(client, proxy, fresh_mock):
    with client.responses.stream(model="gpt-4.1", tools=TOOLS, input=[
            {"role": "user", "content": "Where is my order?"}]) as stream:
        final = stream.get_final_response()
    call = final.output[0]
    assert call.type == "function_call" and json.loads(call.arguments) == {"order_id": "x"}

    case = orders_api()
    parts = [{"type": "input_text", "text": "exit code 0"}, {"type": "input_text", "text": case.content}]
    body = {"model": "gpt-4.1", "input": [
        {"role": "user", "content": case.question},
        {"type": "custom_tool_call", "call_id": "call_c", "name": "run_query", "input": "orders --limit 500"},
        {"type": "custom_tool_call_output", "call_id": "call_c", "output": parts}]}
    answer = httpx.post(f"{proxy.url}/responses", json=body, headers={"authorization": f"Bearer {API_KEY}"})
    assert answer.status_code == 200
    sent = json.loads(fresh_mock.last_body())
    assert sent["input"][:2] == body["input"][:2]
    out = sent["input"][2]["output"]
    assert out[0] == parts[0] and len(out[1]["text"]) < len(case.content) / 2
    assert all(needle in out[1]["text"] for needle in case.answers)


def test_small_outputs_and_user_input_go_through_untouched(proxy, fresh_mock):
    body = {"model": "gpt-4o", "input": [
        {"role": "developer", "content": "x" * 5000},
        {"role": "user", "content": [{"type": "input_text", "text": "y" * 5000}]},
        {"type": "function_call_output", "call_id": "c", "output": "short"}]}
    raw = json.dumps(body, indent=1).encode()
    answer = httpx.post(f"{proxy.url}/v1/responses", content=raw, headers={
        "authorization": f"Bearer {API_KEY}", "content-type": "application/json"})
    assert answer.status_code == 200 and answer.headers["x-headroom-tokens-saved"] == "0"
    assert fresh_mock.last_body() == raw  # the client's own bytes


def test_headroom_errors_use_openai_shape(proxy):
    for path in ("/v1/responses", "/responses"):
        bad = httpx.post(f"{proxy.url}{path}", content=b"{not json", headers={"authorization": f"Bearer {API_KEY}"})
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    websocket = httpx.get(f"{proxy.url}/responses", headers={"x-api-key": "looks-anthropic", "upgrade": "websocket"})
    assert websocket.status_code == 426 and websocket.json()["error"]["code"] == "websocket_not_supported"


def test_a_websocket_upgrade_is_refused_with_426_so_clients_use_http(proxy, fresh_mock):
    """Codex falls back to HTTP at once on a 426 (tests/test_codex_cli.py drives the real one)."""
    upgrade = {"connection": "Upgrade", "upgrade": "websocket", "sec-websocket-version": "13",
               "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "authorization": f"Bearer {API_KEY}"}
    for path in ("/v1/responses", "/responses"):
        refused = httpx.get(f"{proxy.url}{path}", headers=upgrade)
        assert refused.status_code == 426
        assert refused.json()["error"] == {
            "message": refused.json()["error"]["message"], "type": "invalid_request_error", "param": None,
            "code": "websocket_not_supported"}
        assert "POST /v1/responses" in refused.json()["error"]["message"]
    assert fresh_mock.requests() == []  # never relayed
    # Other Responses paths still pass through, GET included.
    assert httpx.get(f"{proxy.url}/v1/responses/resp_1", headers=upgrade).json()["id"] == "resp_1"


def test_upstream_stream_error_event_is_relayed_and_not_cached(start_proxy, fresh_mock):
    client = client_for(start_proxy())  # cache on
    for _ in range(2):
        events = list(client.responses.create(model="gpt-4o", input="flaky", stream=True,
                                              extra_headers={"x-mock-stream-error-after": "3"}))
        assert events[-1].type == "error" and events[-1].code == "server_error"
        assert events[-1].sequence_number == 3
    assert len(fresh_mock.requests()) == 2  # an answer that ended in an error is never replayed


def test_compress_endpoint_takes_a_responses_body(proxy, fresh_mock):
    case = orders_api()
    items = [{"role": "user", "content": case.question},
             {"type": "function_call_output", "call_id": "c", "output": case.content}]
    answer = httpx.post(f"{proxy.url}/v1/compress", headers={"authorization": f"Bearer {API_KEY}"},
                        json={"provider": "responses", "model": "gpt-4.1", "input": items})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["provider"] == "responses" and result["receipt"]["tokens_saved"] > 0
    assert result["input"][0] == items[0] and len(result["input"][1]["output"]) < len(case.content)
    missing = httpx.post(f"{proxy.url}/v1/compress", json={"provider": "responses", "messages": []},
                         headers={"authorization": f"Bearer {API_KEY}"})
    assert missing.status_code == 400 and "input" in missing.json()["error"]["message"]
    assert fresh_mock.requests() == []


def test_mock_speaks_the_responses_api(fresh_mock):
    """The mock itself: events in the real API's order, usage override, recording."""
    headers = {"authorization": f"Bearer {API_KEY}", "x-mock-usage": json.dumps(USAGE)}
    plain = httpx.post(f"{fresh_mock.url}/v1/responses", json={"model": "m", "input": "hello"}, headers=headers)
    assert plain.json()["usage"] == USAGE and plain.json()["status"] == "completed"
    streamed = httpx.post(f"{fresh_mock.url}/v1/responses", headers=headers,
                          json={"model": "m", "input": "hello", "stream": True})
    names = [block.split("\n", 1)[0].removeprefix("event: ") for block in streamed.text.strip().split("\n\n")]
    assert names == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * 3,
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.completed"]
    completed = json.loads(streamed.text.strip().split("\n\n")[-1].split("data: ", 1)[1])
    assert completed["response"]["usage"] == USAGE
    assert [r["path"] for r in fresh_mock.requests()] == ["/v1/responses"] * 2
