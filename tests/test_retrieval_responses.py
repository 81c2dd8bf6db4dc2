"""The retrieval tool in the OpenAI Responses API, end to end: the real ``openai`` SDK, the real
proxy CLI, and the mock upstream acting as a careful model (``x-mock-seek``,
:mod:`testkit.retrieving_responses`) that calls ``headroom_retrieve`` when compression hid the
fact it needs.

What the client must see: one ordinary response that quotes the fact, never a call to the
retrieval tool, usage summed over every upstream call, and a stream the SDK's helper parses
into the same response; what the upstream must see: the tool declared with the same bytes on
every request, the reasoning item before the call it led to, and on every later turn the very
bytes it saw before.
"""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

from headroom.formats.base import INPUT_SCHEMA, TOOL_DESCRIPTION, TOOL_NAME, dumps
from testkit.waiting import wait_for

MODEL = "gpt-5"
API_KEY = "sk-responses-retrieval"
SHELL = {"type": "function", "name": "exec_command", "description": "Run a shell command.",
         "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}
DECLARED = {"type": "function", "name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": INPUT_SCHEMA}
REASONING = ["reasoning.encrypted_content"]
USAGE = {"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 800}, "output_tokens": 50,
         "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 1050}


def ticket(n: int, i: int) -> str:
    return f"TK-{(n * 7919 + i * 104729) % 16**6:06x}"


def log_line(n: int, i: int) -> str:
    return f"2024-05-01T10:{i // 60:02d}:{i % 60:02d}Z INFO api-{i % 5} served request {5000 + i} ticket {ticket(n, i)}"


FACT_AT = 101


def fact(n: int) -> str:
    return ticket(n, FACT_AT)


def fact_line(n: int) -> str:
    return log_line(n, FACT_AT)


def service_log(n: int = 0, lines: int = 240) -> str:
    """Log ``n``: every line alike but for its ticket, so the log compressor keeps head and tail
    and leaves line 102 (the ticket :func:`fact` ``(n)``) out."""
    return "\n".join(log_line(n, i) for i in range(lines))


def conversation(log: str, call_id: str = "call_log1", question: str = "Check the service log.") -> list[dict]:
    return [
        {"role": "user", "content": question},
        {"type": "function_call", "call_id": call_id, "name": "exec_command", "arguments": '{"cmd":"cat app.log"}'},
        {"type": "function_call_output", "call_id": call_id, "output": log},
    ]


def upstream(mock) -> list[tuple[bytes, dict]]:
    """Every Responses request the upstream got: (raw body, parsed)."""
    return [(raw := r["body"].encode("latin-1"), json.loads(raw)) for r in mock.requests()
            if r["path"] == "/v1/responses"]


def summed(usage: dict, times: int) -> dict:
    return {k: summed(v, times) if isinstance(v, dict) else v * times for k, v in usage.items()}


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy("--no-cache", "--no-rate-limit")


@pytest.fixture
def client(proxy):
    return openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=API_KEY, max_retries=0)


def seek(fact: str, **more: str) -> dict:
    return {"x-mock-seek": fact, "x-mock-usage": json.dumps(USAGE), **more}


def test_json_the_model_retrieves_and_the_client_gets_one_response(client, fresh_mock):
    response = client.responses.create(model=MODEL, tools=[SHELL], input=conversation(service_log()),
                                       include=REASONING, extra_headers=seek(fact(0)))
    assert response.output_text.startswith("Let me look that up. Found: ") and fact_line(0) in response.output_text
    dumped = response.model_dump_json()
    assert TOOL_NAME not in dumped, dumped  # no call, no echo of the proxy's tool
    assert [item.type for item in response.output] == ["reasoning", "message", "reasoning", "message"]
    assert response.status == "completed" and response.usage.model_dump(exclude_none=True) == summed(USAGE, 2)
    (raw1, first), (_, second) = upstream(fresh_mock)
    assert fact(0) not in raw1.decode()  # compression did hide it
    assert first["tools"] == [SHELL, DECLARED]
    assert dumps(second["tools"]) == dumps(first["tools"])  # the same bytes on every call
    reasoning, preamble, call, result = second["input"][len(first["input"]):]
    assert second["input"][:len(first["input"])] == first["input"]  # the continuation extends what was sent
    assert reasoning["type"] == "reasoning" and reasoning["encrypted_content"] == f"mock-encrypted:{call['call_id']}"
    assert preamble["type"] == "message" and call["name"] == TOOL_NAME
    assert json.loads(call["arguments"])["query"] == fact(0)
    assert result == {"type": "function_call_output", "call_id": call["call_id"], "output": result["output"]}
    assert fact_line(0) in result["output"]


def test_stream_helper_gives_the_json_response_and_the_raw_stream_is_well_formed(client, fresh_mock):
    kwargs = {"model": MODEL, "tools": [SHELL], "input": conversation(service_log(1)), "include": REASONING,
              "extra_headers": seek(fact(1))}
    plain = client.responses.create(**kwargs)
    with client.responses.stream(**kwargs) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == plain.output_text == "".join(deltas)
    assert fact_line(1) in final.output_text
    assert final.usage == plain.usage and final.usage.model_dump(exclude_none=True) == summed(USAGE, 2)
    assert [i.type for i in final.output] == [i.type for i in plain.output]
    assert len(upstream(fresh_mock)) == 4  # two upstream calls each

    events = list(client.responses.create(**kwargs, stream=True))
    raw = json.dumps([e.model_dump() for e in events])
    assert TOOL_NAME not in raw
    assert [e.sequence_number for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert types.count("response.created") == 1 and types.count("response.completed") == 1
    assert types[0] == "response.created" and types[-1] == "response.completed"
    added = [e.output_index for e in events if e.type == "response.output_item.added"]
    assert added == [0, 1, 2, 3]
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [i.model_dump() for i in events[-1].response.output] == [i.model_dump() for i in done]
    assert events[-1].response.id == events[0].response.id


def test_mixed_answer_the_client_gets_its_own_call_and_the_upstream_the_result_after_it(client, fresh_mock):
    headers = seek(fact(2), **{"x-mock-mixed": "exec_command"})
    history: list = conversation(service_log(2))
    first = client.responses.create(model=MODEL, tools=[SHELL], input=history, include=REASONING,
                                    extra_headers=headers)
    assert [item.type for item in first.output] == ["reasoning", "message", "function_call"]
    assert first.output[-1].name == "exec_command" and TOOL_NAME not in first.model_dump_json()
    own = {"type": "function_call_output", "call_id": first.output[-1].call_id, "output": "exit 0"}
    history += [*first.output, own]  # the SDK's own objects, as an application passes them back
    second = client.responses.create(model=MODEL, tools=[SHELL], input=history, include=REASONING,
                                     extra_headers=headers)
    assert second.output_text.startswith("Found: ") and fact_line(2) in second.output_text
    history += [*second.output, {"role": "user", "content": "Thanks."}]
    client.responses.create(model=MODEL, tools=[SHELL], input=history, include=REASONING, extra_headers=headers)

    (_, sent1), (raw2, sent2), (raw3, _) = upstream(fresh_mock)
    added = sent2["input"][len(sent1["input"]):]
    assert [i.get("name") or i["type"] for i in added] == [
        "reasoning", "message", TOOL_NAME, "exec_command", "function_call_output", "function_call_output"]
    retrieval_call, result = added[2], added[5]
    assert added[4] == own and result["call_id"] == retrieval_call["call_id"] and fact_line(2) in result["output"]
    assert sent2["input"][:len(sent1["input"])] == sent1["input"]
    # The turn after: the same bytes in the same place.
    prefix = b'"input":' + dumps(sent2["input"])[:-1]
    assert prefix in raw2 and prefix in raw3


def test_a_request_naming_a_spliced_stream_continues_the_upstreams_chain(client, fresh_mock):
    with client.responses.stream(model=MODEL, tools=[SHELL], input=conversation(service_log(3)),
                                 extra_headers=seek(fact(3))) as stream:
        final = stream.get_final_response()
    assert fact_line(3) in final.output_text
    shown = final.id  # the stream's own id: the first upstream response's
    nxt = client.responses.create(model=MODEL, tools=[SHELL], previous_response_id=shown,
                                  input=[{"role": "user", "content": "And the date?"}],
                                  extra_headers={"x-mock-no-tools": "1"})
    assert nxt.output_text.startswith("mock reply: And the date?")
    bodies = [body for _, body in upstream(fresh_mock)]
    assert len(bodies) == 3
    chained = bodies[-1]["previous_response_id"]
    # The server's chain with the retrieval call and its result in it ends at the continuation's
    # response, a later one than the stream showed.
    number = int(shown.removeprefix("resp_mock"))
    assert chained != shown and chained.startswith("resp_mock") and int(chained.removeprefix("resp_mock")) > number


def _prefix_changes(proxy) -> float:
    text = httpx.get(f"{proxy.url}/metrics").text
    return sum(float(v) for v in re.findall(r"^headroom_prefix_changes_total\{[^}]*\} (\S+)$", text, re.M))


def test_a_15_turn_session_with_retrievals_sends_the_upstream_the_same_prefix_every_turn(start_proxy, module_redis,
                                                                                         fresh_mock):
    """Each turn: a question, the client's command and its output; every third output hides a
    fact the model then retrieves (the last one from an older log, which takes two retrievals:
    the model reads the newest marker first). JSON and stream turns alternate; the application
    sends back the SDK's output objects. Every upstream request begins with the bytes of the one
    before. Two workers on Redis: a turn's record, written by one, is read by the other."""
    proxy = start_proxy("--workers", "2", "--redis-url", module_redis.url, "--no-cache", "--no-rate-limit")
    client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=API_KEY, max_retries=0)
    changes = _prefix_changes(proxy)
    history: list = []
    seen = 0
    previous: bytes | None = None
    retrieved = 0
    for t in range(15):
        hides = t % 3 == 1
        output = service_log(t) if hides else f"exit 0 (step {t})"
        history += conversation(output, call_id=f"call_{t:02d}", question=f"Step {t}: check the log.")
        sought = ticket(10, 150) if t == 13 else fact(t)  # t == 13: a line of the log of step 10
        kwargs = {"model": MODEL, "tools": [SHELL], "input": history, "include": REASONING,
                  "prompt_cache_key": "session-15", "extra_headers": seek(sought) if hides else {}}
        if t % 2:
            with client.responses.stream(**kwargs) as stream:
                answer = stream.get_final_response()
        else:
            answer = client.responses.create(**kwargs)
        assert TOOL_NAME not in answer.model_dump_json(exclude={"tools"})
        assert ("Found: " in answer.output_text) is hides, answer.output_text
        history += answer.output
        bodies = upstream(fresh_mock)[seen:]
        seen += len(bodies)
        (raw, body), *_ = bodies
        if previous is not None:
            assert previous in raw  # what the upstream saw before, byte for byte, at the head of input
        assert len(bodies) == (1 + (2 if t == 13 else 1) if hides else 1)
        retrieved += len(bodies) - 1
        for later_raw, _ in bodies[1:]:  # a continuation extends the request it continues
            assert b'"input":' + dumps(body["input"])[:-1] in later_raw
        last_raw, last = bodies[-1]
        previous = b'"input":' + dumps(last["input"])[:-1]
        assert previous in last_raw
    assert retrieved == 6
    # Each worker writes its counts to the shared store every 0.25 s (headroom.proxy.stats): the
    # worker answering /stats may not have the other's last turn yet.
    stats = wait_for(lambda: (s := httpx.get(f"{proxy.url}/stats", timeout=10).json()["retrieval_loop"])
                     ["retrievals"] >= retrieved and s, timeout=10, what="both workers' counts in /stats")
    assert stats == {"retrievals": retrieved, "continuations": retrieved}
    assert _prefix_changes(proxy) == changes == 0
