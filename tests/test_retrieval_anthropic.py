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
import pytest

from headroom.transforms.retrieval import INPUT_SCHEMA, TOOL_DESCRIPTION, TOOL_NAME

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
def proxy(start_proxy):
    return start_proxy("--no-cache", "--no-rate-limit")


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
