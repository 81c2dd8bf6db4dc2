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

import openai
import pytest

from headroom.formats.base import INPUT_SCHEMA, TOOL_DESCRIPTION, TOOL_NAME, dumps

MODEL = "gpt-5"
API_KEY = "sk-responses-retrieval"
SHELL = {"type": "function", "name": "exec_command", "description": "Run a shell command.",
         "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}
DECLARED = {"type": "function", "name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": INPUT_SCHEMA}
REASONING = ["reasoning.encrypted_content"]
USAGE = {"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 800}, "output_tokens": 50,
         "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 1050}


def fact_line(n: int) -> str:
    return f"2024-05-01T11:{n:02d}:07Z INFO billing-{n} ledger synced, reconcile ticket FACT-{7000 + n}"


def service_log(n: int = 0, lines: int = 400, at: int = 217) -> str:
    """A log the log compressor shortens to head and tail: the fact's line (``FACT-700n``) is left out."""
    rows = [f"2024-05-01T10:{i // 60:02d}:{i % 60:02d}Z INFO api-{i % 5} served request {5000 + i} "
            f"in {12 + i % 11}ms" for i in range(lines)]
    rows[at] = fact_line(n)
    return "\n".join(rows)


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
                                       include=REASONING, extra_headers=seek("FACT-7000"))
    assert response.output_text.endswith(f"Found: {fact_line(0)}") or fact_line(0) in response.output_text
    dumped = response.model_dump_json()
    assert TOOL_NAME not in dumped, dumped  # no call, no echo of the proxy's tool
    assert [item.type for item in response.output] == ["reasoning", "message", "reasoning", "message"]
    assert response.status == "completed" and response.usage.model_dump(exclude_none=True) == summed(USAGE, 2)
    (raw1, first), (_, second) = upstream(fresh_mock)
    assert "FACT-7000" not in raw1.decode()  # compression did hide it
    assert first["tools"] == [SHELL, DECLARED]
    assert dumps(second["tools"]) == dumps(first["tools"])  # the same bytes on every call
    reasoning, preamble, call, result = second["input"][len(first["input"]):]
    assert second["input"][:len(first["input"])] == first["input"]  # the continuation extends what was sent
    assert reasoning["type"] == "reasoning" and reasoning["encrypted_content"] == f"mock-encrypted:{call['call_id']}"
    assert preamble["type"] == "message" and call["name"] == TOOL_NAME
    assert json.loads(call["arguments"])["query"] == "FACT-7000"
    assert result == {"type": "function_call_output", "call_id": call["call_id"], "output": result["output"]}
    assert fact_line(0) in result["output"]


def test_stream_helper_gives_the_json_response_and_the_raw_stream_is_well_formed(client, fresh_mock):
    kwargs = {"model": MODEL, "tools": [SHELL], "input": conversation(service_log(1)), "include": REASONING,
              "extra_headers": seek("FACT-7001")}
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
