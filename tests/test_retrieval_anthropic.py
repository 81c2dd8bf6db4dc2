"""The retrieval tool in Anthropic Messages, end to end: the real ``anthropic`` SDK, the real
proxy CLI, and the mock upstream acting as a careful model (``x-mock-seek``,
:mod:`testkit.retrieving_anthropic`) that calls ``headroom_retrieve`` when compression hid
the fact it needs.

What the client must see: one ordinary answer that quotes the fact, never a call to the
retrieval tool, usage summed over every upstream call; what the upstream must see: the tool
declared with the same bytes on every request, the call and its result in the continuation,
the thinking block first and unchanged.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from headroom.transforms.retrieval import INPUT_SCHEMA, TOOL_DESCRIPTION, TOOL_NAME
from testkit.retrieving_anthropic import signature
from testkit.waiting import wait_for

MODEL = "claude-sonnet-4-5"
FACT = "ZEBRA-4417"
FACT_LINE = "2024-05-01T10:03:37Z INFO worker-3 rotated credentials, build tag ZEBRA-4417 now live"
BASH = {"name": "Bash", "description": "Run a shell command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
DECLARED = {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": INPUT_SCHEMA}


def service_log(fact_line: str = FACT_LINE, lines: int = 400, at: int = 217) -> str:
    """A log the log compressor shortens to head and tail: the fact's line is left out."""
    rows = [f"2024-05-01T10:{i // 60:02d}:{i % 60:02d}Z INFO worker-{i % 7} handled request {1000 + i} "
            f"in {10 + i % 13}ms" for i in range(lines)]
    rows[at] = fact_line
    return "\n".join(rows)


def conversation(log: str, question: str = "Check the service log.") -> list[dict]:
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_log1", "name": "Bash",
                                           "input": {"command": "cat app.log"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_log1", "content": log}]},
    ]


def upstream_bodies(mock) -> list[dict]:
    return [json.loads(r["body"].encode("latin-1")) for r in mock.requests() if r["path"] == "/v1/messages"]


def block_types(message) -> list[str]:
    return [block.type for block in message.content]


@pytest.fixture(scope="module")
def request_log(tmp_path_factory):
    return tmp_path_factory.mktemp("retrieval-log") / "requests.jsonl"


@pytest.fixture(scope="module")
def proxy(start_proxy, request_log):
    return start_proxy("--no-cache", "--no-rate-limit", "--log-file", str(request_log))


@pytest.fixture
def client(proxy):
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-retrieval", max_retries=0,
                               default_headers={"x-mock-seek": FACT})


def test_the_model_retrieves_what_compression_hid_and_the_client_gets_one_answer(client, fresh_mock):
    message = client.messages.create(model=MODEL, max_tokens=256, tools=[BASH], messages=conversation(service_log()))
    answer = message.content[-1].text
    assert answer.startswith("Found: ") and FACT_LINE in answer  # quoted from the retrieval's result
    assert message.stop_reason == "end_turn"
    assert TOOL_NAME not in message.model_dump_json()  # the client never sees the proxy's tool
    assert block_types(message) == ["text", "text"]  # the preamble of the first call, then the answer
    first, second = upstream_bodies(fresh_mock)
    assert FACT not in json.dumps(first)  # compression did hide it
    assert first["tools"] == [BASH, DECLARED]
    call = second["messages"][-2]["content"][-1]
    assert call["type"] == "tool_use" and call["name"] == TOOL_NAME and call["input"]["query"] == FACT
    result = second["messages"][-1]["content"][0]
    assert result["tool_use_id"] == call["id"] and FACT_LINE in result["content"] and "is_error" not in result
    assert second["messages"][:-2] == first["messages"]  # the continuation extends what was sent


def sse_events(raw: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]


def test_a_streamed_answer_is_spliced_into_one_message(client, proxy, fresh_mock):
    messages = conversation(service_log())
    plain = client.messages.create(model=MODEL, max_tokens=256, tools=[BASH], messages=messages)
    with client.messages.stream(model=MODEL, max_tokens=256, tools=[BASH], messages=messages) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert [block.model_dump() for block in final.content] == [block.model_dump() for block in plain.content]
    assert "".join(texts) == "".join(block.text for block in final.content)
    assert final.stop_reason == plain.stop_reason == "end_turn"
    assert final.usage.model_dump().keys() == plain.usage.model_dump().keys()
    assert final.id.startswith("msg_mock")

    fresh_mock.reset()
    raw = httpx.post(f"{proxy.url}/v1/messages",
                     headers={"x-api-key": "sk-ant-retrieval", "x-mock-seek": FACT, "x-mock-usage": FIXED_USAGE},
                     json={"model": MODEL, "max_tokens": 256, "tools": [BASH], "messages": messages, "stream": True},
                     timeout=30).content
    assert TOOL_NAME.encode() not in raw
    events = sse_events(raw)
    kinds = [event["type"] for event in events]
    assert kinds.count("message_start") == 1 and kinds.count("message_stop") == 1 and kinds[-1] == "message_stop"
    assert kinds.count("message_delta") == 1
    starts = [event["index"] for event in events if event["type"] == "content_block_start"]
    assert starts == [0, 1]  # the retrieval call's index left no gap
    for event in events:
        if event["type"] in ("content_block_delta", "content_block_stop"):
            assert event["index"] in starts
    calls = upstream_bodies(fresh_mock)
    assert len(calls) == 2 and all(body["stream"] for body in calls)
    final_usage = next(event for event in events if event["type"] == "message_delta")["usage"]
    assert final_usage == SUMMED_USAGE


FIXED_USAGE = json.dumps({"input_tokens": 100, "output_tokens": 7, "cache_read_input_tokens": 50,
                          "cache_creation_input_tokens": 5})
SUMMED_USAGE = {"input_tokens": 200, "output_tokens": 14, "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 10}


def as_sent(message) -> dict:
    """The assistant turn as a client sends it back (the SDK's blocks, null fields dropped)."""
    return {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in message.content]}


def test_usage_of_every_upstream_call_is_in_the_answer_the_stats_and_the_request_log(
        client, proxy, request_log, fresh_mock):
    before = httpx.get(f"{proxy.url}/stats", timeout=10).json()["retrieval_loop"]
    message = client.messages.create(model=MODEL, max_tokens=256, tools=[BASH], messages=conversation(service_log()),
                                     extra_headers={"x-mock-usage": FIXED_USAGE})
    assert message.usage.model_dump(exclude_none=True) == SUMMED_USAGE
    request_id = message._request_id  # the mock's id of the first call, relayed with its headers
    assert request_id and request_id.startswith("req_mock")
    line = wait_for(lambda: next((json.loads(row) for row in request_log.read_text().splitlines()
                                  if json.loads(row)["input_tokens"] == 200), None), timeout=10, what="the log line")
    assert (line["upstream_calls"], line["retrievals"], line["output_tokens"]) == (2, 1, 14)
    assert (line["cache_read_tokens"], line["cache_write_tokens"]) == (100, 10)
    assert line["cost_usd"] > 0
    stats = wait_for(lambda: (s := httpx.get(f"{proxy.url}/stats", timeout=10).json())["retrieval_loop"]
                     ["retrievals"] > before["retrievals"] and s, timeout=10, what="stats flushed")
    assert stats["retrieval_loop"] == {"retrievals": before["retrievals"] + 1,
                                       "continuations": before["continuations"] + 1}
    assert stats["models"][MODEL]["input_tokens"] >= 200


def test_a_mixed_answer_gives_the_client_its_own_call_and_the_model_its_result_on_the_next_request(
        client, fresh_mock):
    messages = conversation(service_log())
    first = client.messages.create(model=MODEL, max_tokens=256, tools=[BASH], messages=messages,
                                   extra_headers={"x-mock-mixed": "Bash"})
    assert first.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "name", None)) for b in first.content] == [("text", None), ("tool_use", "Bash")]
    assert TOOL_NAME not in first.model_dump_json()
    [seen_first] = upstream_bodies(fresh_mock)  # no continuation: the client's call is the client's
    bash = first.content[1]
    messages += [as_sent(first),
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": bash.id, "content": "done"}]}]
    second = client.messages.create(model=MODEL, max_tokens=256, tools=[BASH], messages=messages)
    assert FACT_LINE in second.content[-1].text  # the retrieval result reached the model
    upstream = upstream_bodies(fresh_mock)[-1]["messages"]
    turn, results = upstream[3], upstream[4]["content"]
    assert [b.get("name") for b in turn["content"] if b["type"] == "tool_use"] == [TOOL_NAME, "Bash"]
    assert [r["tool_use_id"] for r in results] == [bash.id, turn["content"][1]["id"]]  # the client's first
    assert results[0]["content"] == "done" and FACT_LINE in results[1]["content"]
    assert upstream[:3] == seen_first["messages"]

    # On every later turn the upstream sees the same bytes in the same place.
    messages += [as_sent(second), {"role": "user", "content": "Thanks. And now?"}]
    client.messages.create(model=MODEL, max_tokens=256, tools=[BASH], messages=messages)
    raws = [raw_messages(r) for r in fresh_mock.requests() if r["path"] == "/v1/messages"]
    assert raws[2].startswith(raws[1][:-1]) and len(raws[2]) > len(raws[1])


def raw_messages(recorded: dict) -> bytes:
    """The ``messages`` array exactly as the upstream received it."""
    text = recorded["body"]
    start = text.index('"messages":') + len('"messages":')
    _, end = json.JSONDecoder().raw_decode(text, start)
    return text[start:end].encode("latin-1")


def other_log(n: int) -> str:
    return service_log(f"2024-05-01T10:03:37Z INFO worker-3 cache {n} warmed", at=100 + n)


def test_at_most_max_retrievals_rounds_then_the_model_is_asked_to_answer_without_tools(client, fresh_mock):
    messages = [{"role": "user", "content": "Look at these four logs."}]
    for n in range(4):  # four outputs, four markers, and the fact is in none of them
        messages += [
            {"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_l{n}", "name": "Bash",
                                               "input": {"command": f"cat {n}.log"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_l{n}",
                                          "content": other_log(n)}]},
        ]
    message = client.messages.create(model=MODEL, max_tokens=256, tools=[BASH], messages=messages,
                                     extra_headers={"x-mock-seek": "NO-SUCH-FACT"})
    assert message.content[-1].text == "Not found: NO-SUCH-FACT" and message.stop_reason == "end_turn"
    bodies = upstream_bodies(fresh_mock)
    assert len(bodies) == 4  # the first call and three rounds (--max-retrievals 3)
    assert [b.get("tool_choice") for b in bodies] == [None, None, None, {"type": "none"}]
    assert all(b["tools"] == [BASH, DECLARED] for b in bodies)  # the tools stay as they were
    keys = [b["messages"][-2]["content"][-1]["input"]["key"] for b in bodies[1:]]
    assert len(set(keys)) == 3


def test_a_retrieval_the_store_cannot_answer_is_a_tool_error_and_still_a_200(client, proxy, fresh_mock):
    # Caller A's log is compressed: its original is stored under A's partition only.
    client.messages.create(model=MODEL, max_tokens=256, tools=[BASH], messages=conversation(service_log()))
    marker = next(line for line in upstream_bodies(fresh_mock)[0]["messages"][2]["content"][0]["content"]
                  .splitlines() if line.startswith("[headroom:"))
    unknown = "[headroom: 300 of 400 lines omitted; retrieve with key 0123456789abcdef]"
    other = anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-someone-else", max_retries=0,
                                default_headers={"x-mock-seek": FACT})
    for note in (marker, unknown):
        fresh_mock.reset()
        message = other.messages.create(model=MODEL, max_tokens=256, tools=[BASH],
                                        messages=conversation(f"the log, shortened:\n{note}"))
        assert message.content[-1].text == f"Not found: {FACT}"
        _, second = upstream_bodies(fresh_mock)
        result = second["messages"][-1]["content"][0]
        assert result["is_error"] is True
        assert "nothing is stored under key" in result["content"] and "this API key" in result["content"]


def test_a_store_that_is_down_is_a_tool_error_not_a_failed_request(start_proxy, own_redis, fresh_mock):
    proxy = start_proxy("--no-cache", "--redis-url", own_redis.url)
    client = anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-store-down", max_retries=0,
                                 default_headers={"x-mock-seek": FACT})
    own_redis.kill()
    note = "[headroom: 300 of 400 lines omitted; retrieve with key 0123456789abcdef]"
    message = client.messages.create(model=MODEL, max_tokens=256, tools=[BASH],
                                     messages=conversation(f"the log, shortened:\n{note}"))
    assert message.content[-1].text == f"Not found: {FACT}"
    result = upstream_bodies(fresh_mock)[-1]["messages"][-1]["content"][0]
    assert result["is_error"] is True and "cannot be reached" in result["content"]


THINKING = {"type": "enabled", "budget_tokens": 1024}


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_blocks_and_their_signatures_go_back_first_and_unchanged(client, fresh_mock, stream):
    messages = conversation(service_log())
    thought = "The log will tell."  # the client's own turn carries its thinking too, as the API requires
    messages[1]["content"].insert(0, {"type": "thinking", "thinking": thought, "signature": signature(thought)})
    arguments = {"model": MODEL, "max_tokens": 2048, "tools": [BASH], "thinking": THINKING, "messages": messages}
    if stream:
        with client.messages.stream(**arguments) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**arguments)
    assert FACT_LINE in message.content[-1].text  # the mock refuses (400) a continuation that lost the thinking
    assert block_types(message) == ["thinking", "text", "thinking", "text"]
    first_turn = upstream_bodies(fresh_mock)[1]["messages"][-2]
    thinking = first_turn["content"][0]
    assert thinking["type"] == "thinking" and thinking["signature"] == message.content[0].signature
    assert thinking["thinking"] == message.content[0].thinking


def test_without_the_retrieval_tool_the_tool_list_goes_upstream_byte_for_byte(start_proxy, fresh_mock):
    off = start_proxy("--no-cache", "--retrieval-tool", "off")
    body = json.dumps({"model": MODEL, "max_tokens": 64, "tools": [BASH],
                       "messages": [{"role": "user", "content": "hi"}]}, indent=1).encode()
    response = httpx.post(f"{off.url}/v1/messages", content=body, timeout=30,
                          headers={"x-api-key": "sk-ant-off", "content-type": "application/json"})
    assert response.status_code == 200
    assert fresh_mock.last_body() == body
    # And a model that would retrieve cannot: it is never offered the tool.
    message = anthropic.Anthropic(base_url=off.url, api_key="sk-ant-off", max_retries=0).messages.create(
        model=MODEL, max_tokens=256, tools=[BASH], messages=conversation(service_log()),
        extra_headers={"x-mock-seek": FACT})
    assert message.content[-1].text == f"Not found: {FACT}"
    assert upstream_bodies(fresh_mock)[-1]["tools"] == [BASH]


def test_a_request_without_tools_is_left_alone(proxy, fresh_mock):
    body = json.dumps({"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]},
                      indent=1).encode()
    response = httpx.post(f"{proxy.url}/v1/messages", content=body, timeout=30,
                          headers={"x-api-key": "sk-ant-notools", "content-type": "application/json"})
    assert response.status_code == 200
    assert fresh_mock.last_body() == body
    compressed = httpx.post(f"{proxy.url}/v1/messages", timeout=30, headers={"x-api-key": "sk-ant-notools"},
                            json={"model": MODEL, "max_tokens": 64, "messages": conversation(service_log())})
    assert compressed.headers["x-headroom-transforms"] != "none"  # compressed, yet no tool list appears
    assert "tools" not in upstream_bodies(fresh_mock)[-1]
