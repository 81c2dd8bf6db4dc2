"""The retrieval tool in Chat Completions, end to end: the real ``openai`` SDK, the real proxy,
and the mock upstream acting as a careful model (:mod:`testkit.retrieving_model`) that needs
one fact which compression hid behind a marker.

The client must get one ordinary completion (JSON, ``stream=True`` chunks, the SDK's
``chat.completions.stream`` helper) that quotes the fact, and never a call to
``headroom_retrieve``; the upstream must see, on every later request, the very bytes it saw
before (the retrieval calls and results put back in place), so the prompt cache holds.
"""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

from headroom.formats.base import TOOL_NAME
from headroom.transforms import ccr
from testkit.originals import service_log

BASH = {"type": "function", "function": {
    "name": "Bash", "description": "Run a shell command", "strict": True,
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"],
                   "additionalProperties": False}}}


def hidden(line: int) -> str:
    """A fact on a routine line of :func:`service_log` that compression leaves out."""
    return f"/api/orders/{line} 200"


def fact_line(salt: str, fact: str) -> str:
    return next(line for line in service_log(salt).splitlines() if fact in line)


def agent_messages(salt: str) -> list[dict]:
    """An agent's conversation: it ran ``cat app.log`` and asks about it."""
    return [
        {"role": "user", "content": "Check the service log."},
        {"role": "assistant", "content": None, "tool_calls": [{"id": f"call_{salt}", "type": "function", "function": {
            "name": "Bash", "arguments": '{"cmd":"cat app.log"}'}}]},
        {"role": "tool", "tool_call_id": f"call_{salt}", "content": service_log(salt)},
        {"role": "user", "content": "What does the log say?"},
    ]


def found(salt: str, fact: str) -> str:
    """The careful model's answer once it retrieved the fact: the original's line, numbered."""
    number = next(i for i, line in enumerate(service_log(salt).splitlines(), 1) if fact in line)
    return f"Found: {number}:{fact_line(salt, fact)}"


def as_sent(message) -> dict:
    """An answer's message as an agent sends it back: its text and its calls."""
    out: dict = {"role": "assistant", "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.function.name, "arguments": c.function.arguments}}
                             for c in message.tool_calls]
    return out


@pytest.fixture
def client(proxy):
    return openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-openai-retrieval", max_retries=0)


def sent(mock) -> list[dict]:
    return [json.loads(r["body"].encode("latin-1")) for r in mock.requests() if r["path"] == "/v1/chat/completions"]


def retrieval_calls(body: dict) -> list[dict]:
    return [c for m in body["messages"] if m.get("role") == "assistant" for c in m.get("tool_calls") or ()
            if c["function"]["name"] == TOOL_NAME]


def test_json_answer_quotes_the_fact_compression_hid(client, fresh_mock):
    fact = hidden(150)
    completion = client.chat.completions.create(model="gpt-4o", messages=agent_messages("json"), tools=[BASH],
                                                extra_headers={"x-mock-seek": fact})
    message = completion.choices[0].message
    assert message.content == "Let me look that up. " + found("json", fact)
    assert message.tool_calls is None and completion.choices[0].finish_reason == "stop"
    first, second = sent(fresh_mock)
    assert fact not in first["messages"][2]["content"] and ccr.marker_keys(first["messages"][2]["content"])
    assert first["tools"][-1]["function"]["name"] == TOOL_NAME and first["tools"][:-1] == [BASH]
    assert second["tools"] == first["tools"]
    (call,) = retrieval_calls(second)
    assert json.loads(call["function"]["arguments"])["query"] == fact
    assert second["messages"][-1]["tool_call_id"] == call["id"] and fact in second["messages"][-1]["content"]
    # Usage counts both upstream calls.
    bodies = [r["body"] for r in fresh_mock.requests()]
    assert completion.usage.prompt_tokens == sum(max(1, len(b.encode("latin-1")) // 4) for b in bodies)


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_chunks_add_up_to_the_json_answer(client, fresh_mock, include_usage):
    fact = hidden(160)
    headers = {"x-mock-seek": fact}
    whole = client.chat.completions.create(model="gpt-4o", messages=agent_messages("stream"), tools=[BASH],
                                           extra_headers=headers).choices[0].message
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    fresh_mock.reset()
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=agent_messages("stream"), tools=[BASH],
                                                 stream=True, extra_headers=headers, **options))
    assert len(sent(fresh_mock)) == 2  # it did retrieve
    assert len({c.id for c in chunks}) == 1
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == whole.content
    assert not any(d.tool_calls for d in deltas)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    if include_usage:
        bodies = [r["body"] for r in fresh_mock.requests()]
        assert len(usage) == 1 and chunks[-1].usage is usage[0]
        assert usage[0].prompt_tokens == sum(max(1, len(b.encode("latin-1")) // 4) for b in bodies)
    else:
        assert usage == []  # Headroom asked for it; the client did not


def test_stream_helper_final_message_equals_the_json_answer(client, fresh_mock):
    fact = hidden(170)
    headers = {"x-mock-seek": fact}
    whole = client.chat.completions.create(model="gpt-4o", messages=agent_messages("helper"), tools=[BASH],
                                           extra_headers=headers)
    with client.chat.completions.stream(model="gpt-4o", messages=agent_messages("helper"), tools=[BASH],
                                        extra_headers=headers) as stream:
        text = "".join(event.delta for event in stream if event.type == "content.delta")
        final = stream.get_final_completion()
    assert text == final.choices[0].message.content == whole.choices[0].message.content
    assert final.choices[0].message.tool_calls in (None, [])
    assert final.choices[0].finish_reason == whole.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("stream", [False, True])
def test_mixed_turn_gives_the_client_its_own_call_and_the_model_its_result_next_time(client, fresh_mock, stream):
    fact = hidden(180)
    salt = f"mixed-{stream}"
    headers = {"x-mock-seek": fact, "x-mock-mixed": "Bash"}
    messages = agent_messages(salt)
    if stream:
        with client.chat.completions.stream(model="gpt-4o", messages=messages, tools=[BASH],
                                            extra_headers=headers) as events:
            completion = events.get_final_completion()
    else:
        completion = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[BASH],
                                                    extra_headers=headers)
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in message.tool_calls] == ["Bash"]
    assert TOOL_NAME not in completion.model_dump_json()
    assert len(sent(fresh_mock)) == 1  # no continuation: the client's call comes first
    messages += [as_sent(message),
                 {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "exit 0"}]
    answer = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[BASH], extra_headers=headers)
    assert answer.choices[0].message.content == found(salt, fact)
    upstream = sent(fresh_mock)[-1]["messages"]
    turn = upstream[len(agent_messages(salt))]
    assert [c["function"]["name"] for c in turn["tool_calls"]] == [TOOL_NAME, "Bash"]
    retrieval = next(c for c in turn["tool_calls"] if c["function"]["name"] == TOOL_NAME)
    after = upstream[len(agent_messages(salt)) + 1:]
    assert [m.get("tool_call_id") for m in after] == [message.tool_calls[0].id, retrieval["id"]]
    assert fact in after[1]["content"]


# -- a long session: the prefix the upstream saw never changes ---------------------------------


def messages_bytes(raw: bytes) -> bytes:
    """The ``messages`` array of a recorded request body, as the upstream got its bytes, less
    its closing ``]`` (where the body's other fields sit is the SDK's choice: the stream
    helper puts ``stream`` first, ``create`` does not)."""
    text = raw.decode()
    start = text.index('"messages":') + len('"messages":')
    _, end = json.JSONDecoder().raw_decode(text, start)
    return text[start:end - 1].encode()


def prefix_changes(proxy) -> float:
    text = httpx.get(f"{proxy.url}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(r"^headroom_prefix_changes_total\{[^}]*\} (\S+)$", text, re.M))


RETRIEVING = {0: 120, 3: 130, 6: 140, 9: 150, 12: 160}  # turn -> hidden line sought
MIXED = {5: 170, 10: 180}  # turns whose retrieval comes with the client's own call


def ask(client, messages: list, headers: dict, stream: bool, got: list[str]) -> dict:
    """One request of the session, JSON or through the stream helper; the answer as sent back."""
    if not stream:
        completion = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[BASH],
                                                    extra_headers=headers)
    else:
        with client.chat.completions.stream(model="gpt-4o", messages=messages, tools=[BASH],
                                            extra_headers=headers) as events:
            completion = events.get_final_completion()
    got.append(completion.model_dump_json())
    return as_sent(completion.choices[0].message)


@pytest.fixture(scope="module")
def session_proxy(start_proxy):
    # The back-off policy is off: this session is about the prefix, and its many retrievals of
    # one tool's outputs would otherwise (rightly) turn that tool's compression lossless.
    return start_proxy("--no-cache", "--retrieval-backoff", "0")


def test_a_long_session_with_retrievals_keeps_the_upstreams_prefix(session_proxy, fresh_mock):
    client = openai.OpenAI(base_url=f"{session_proxy.url}/v1", api_key="sk-openai-retrieval-session",
                           max_retries=0)
    messages: list = [{"role": "system", "content": "You are an agent with a shell."}]
    got: list[str] = []  # everything the client received
    for turn in range(15):
        salt = f"turn{turn}"
        stream = turn % 2 == 1

        messages.append({"role": "user", "content": f"Look at the log of service {salt}."})
        call = ask(client, messages, {}, stream, got)  # the model runs the client's tool (the mock calls the first one)
        assert call["tool_calls"][0]["function"]["name"] == "Bash"
        messages += [call, {"role": "tool", "tool_call_id": call["tool_calls"][0]["id"],
                            "content": service_log(salt)}]
        if turn in RETRIEVING or turn in MIXED:
            fact = hidden(RETRIEVING.get(turn) or MIXED[turn])
        else:
            fact = f"ord-{salt}-00194"  # an error line compression keeps: no retrieval needed
        headers = {"x-mock-seek": fact, **({"x-mock-mixed": "Bash"} if turn in MIXED else {})}
        answer = ask(client, messages, headers, stream, got)
        if turn in MIXED:
            assert "tool_calls" in answer, (turn, answer)
            assert [c["function"]["name"] for c in answer["tool_calls"]] == ["Bash"]
            messages += [answer, {"role": "tool", "tool_call_id": answer["tool_calls"][0]["id"], "content": "ok"}]
            answer = ask(client, messages, headers, stream, got)
        if turn in RETRIEVING:
            expected = "Let me look that up. " + found(salt, fact)
        else:
            expected = found(salt, fact) if turn in MIXED else f"Found: {fact_line(salt, fact)}"
        assert answer["content"] == expected, f"turn {turn}"
        messages.append(answer)

    assert not any(TOOL_NAME in text for text in got)
    bodies = [r["body"].encode("latin-1") for r in fresh_mock.requests() if r["path"] == "/v1/chat/completions"]
    parsed = [json.loads(b) for b in bodies]
    assert sum(len(retrieval_calls(p)) for p in parsed[-1:]) == len(RETRIEVING) + len(MIXED)
    assert len({json.dumps(p["tools"]) for p in parsed}) == 1
    assert parsed[0]["tools"][-1]["function"]["name"] == TOOL_NAME
    sent_messages = [messages_bytes(b) for b in bodies]
    for k in range(1, len(bodies)):
        assert sent_messages[k].startswith(sent_messages[k - 1]), f"upstream request {k}: an earlier byte changed"
    assert prefix_changes(session_proxy) == 0
