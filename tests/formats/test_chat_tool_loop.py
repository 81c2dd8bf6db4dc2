"""The retrieval tool's loop for Chat Completions (:mod:`headroom.formats._chat_tools`), fed the
real bytes of the mock upstream's answers.

The loop's I/O is the proxy's (:mod:`headroom.proxy.tool_loop`); here the pure parts are driven
by hand the way it drives them: the mock (the careful model) is asked, its answer read, the
retrieval call answered from the original with :func:`headroom.transforms.retrieval.answer`,
the continuation asked, and the answers merged (JSON) or spliced (streams). What the client
gets must be one ordinary completion; what the upstream saw must come back byte for byte on
the next request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from headroom.formats import CHAT
from headroom.formats.base import INPUT_SCHEMA, TOOL_DESCRIPTION, TOOL_NAME, ToolAnswer, Turn, data_of, dumps
from headroom.transforms.retrieval import answer as retrieval_answer

LOOP = CHAT.tool_loop
KEY = "3f9c0a1b2c3d4e5f"
FACT = "deploy 7f3a9c2 rolled back"
ORIGINAL = "\n".join(
    f"2026-03-{1 + i % 28:02d} deploy {i:07x} ok" if i != 311 else f"2026-03-12 {FACT} by ops"
    for i in range(1, 401)) + "\n"
BASH = {"type": "function", "function": {
    "name": "Bash", "description": "Run a command",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}}
SEEK = {"x-mock-seek": FACT}
# Usage with every count the loop must sum, the *_tokens_details included.
USAGE = {"x-mock-usage": json.dumps({"prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 0},
                                     "completion_tokens_details": {"reasoning_tokens": 7}})}


def conversation(**extra) -> dict:
    """An agent's request whose tool output Headroom compressed: the fact is behind the marker."""
    body = {"model": "gpt-4o", "tools": [BASH], "messages": [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "What happened to the deploy?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_git", "type": "function", "function": {"name": "Bash", "arguments": '{"cmd":"git log"}'}}]},
        {"role": "tool", "tool_call_id": "call_git",
         "content": f"2026-03-01 deploy 0000001 ok\n[headroom: 399 of 400 lines omitted; retrieve with key {KEY}]"},
        {"role": "user", "content": "Which deploy was rolled back?"}]}
    body.update(extra)
    assert LOOP.declare(body)
    return body


def ask(mock, body: dict, *headers: dict) -> httpx.Response:
    merged = {k: v for h in headers for k, v in h.items()}
    response = httpx.post(f"{mock.url}/v1/chat/completions", content=dumps(body),
                          headers={"content-type": "application/json", **merged}, timeout=10)
    assert response.status_code == 200, response.text
    return response


def answers_for(turn: Turn) -> list[ToolAnswer]:
    """The proxy's answers to the turn's retrieval calls."""
    assert turn.retrieval
    return [ToolAnswer(call, retrieval_answer(ORIGINAL, call.arguments.get("lines"), call.arguments.get("query")))
            for call in turn.retrieval]


def chunks(stream: bytes) -> list[dict | str]:
    """The data of each event: a chunk's JSON, or ``"[DONE]"``."""
    out: list[dict | str] = []
    for event in stream.split(b"\n\n"):
        data = data_of(event)
        if data is not None:
            out.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return out


def usage_chunks(stream: bytes) -> list[dict]:
    return [c["usage"] for c in chunks(stream) if isinstance(c, dict) and isinstance(c.get("usage"), dict)]


def added(a: dict, b: dict) -> dict:
    return {k: added(v, b[k]) if isinstance(v, dict) else v + b[k] for k, v in a.items()}


def feed(splicer, stream: bytes, whole: bool) -> bytes:
    """Feed a stream all at once, or event by event (as the relay hands events out)."""
    if whole:
        return splicer.feed(stream)
    return b"".join(splicer.feed(event + b"\n\n") for event in stream.split(b"\n\n") if event)


# -- declare --------------------------------------------------------------------------------


def test_declare_appends_the_tool_last_with_the_same_bytes_every_time():
    first, second = {"tools": [BASH], "messages": []}, {"tools": [BASH], "messages": []}
    assert LOOP.declare(first) and LOOP.declare(second)
    assert first["tools"][0] == BASH and dumps(first) == dumps(second)
    assert first["tools"][-1] == {"type": "function", "function": {
        "name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": INPUT_SCHEMA}}
    assert not LOOP.declare(first)  # already declared: untouched
    assert dumps(first) == dumps(second)


@pytest.mark.parametrize("body", [{"messages": []}, {"tools": [], "messages": []},
                                  {"tools": [BASH], "n": 2, "messages": []}])
def test_declare_leaves_a_request_without_tools_alone(body):
    before = dumps(body)
    assert not LOOP.declare(body)
    assert dumps(body) == before


# -- JSON: turn, continue_with, merge ---------------------------------------------------------


def test_json_retrieval_merges_into_one_completion(mock):
    body = conversation()
    first = ask(mock, body, SEEK, USAGE).json()
    turn = LOOP.turn(first)
    assert turn.client_calls == 0 and len(turn.retrieval) == 1
    call = turn.retrieval[0]
    assert call.name == TOOL_NAME and call.arguments == {"key": KEY, "query": FACT}
    assert turn.message == {"role": "assistant", "content": first["choices"][0]["message"]["content"],
                            "tool_calls": first["choices"][0]["message"]["tool_calls"]}

    answers = answers_for(turn)
    before = dumps(body)
    continued = LOOP.continue_with(body, turn, answers, last=False)
    assert dumps(body) == before  # the client's body is never changed
    assert continued["messages"][:-2] == body["messages"]
    assert continued["messages"][-2] == turn.message
    assert continued["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": answers[0].text}
    assert continued["tools"] == body["tools"] and "tool_choice" not in continued
    second = ask(mock, continued, SEEK, USAGE).json()
    assert LOOP.turn(second).retrieval == ()

    merged = LOOP.merge([first, second])
    assert {k: merged[k] for k in ("id", "created", "model", "system_fingerprint")} == \
        {k: first[k] for k in ("id", "created", "model", "system_fingerprint")}
    message = merged["choices"][0]["message"]
    assert message["content"] == f"Let me look that up. Found: 311:2026-03-12 {FACT} by ops"
    assert "tool_calls" not in message and TOOL_NAME not in json.dumps(merged)
    assert merged["choices"][0]["finish_reason"] == "stop" and len(merged["choices"]) == 1
    assert merged["usage"] == added(first["usage"], second["usage"])
    assert merged["usage"]["prompt_tokens_details"]["cached_tokens"] == 200
    assert merged["usage"]["completion_tokens_details"]["reasoning_tokens"] == 14


def test_last_round_asks_for_an_answer_without_tools(mock):
    body = conversation()
    turn = LOOP.turn(ask(mock, body, SEEK, {"x-mock-seek": "nowhere to be found"}).json())
    continued = LOOP.continue_with(body, turn, answers_for(turn), last=True)
    assert continued["tool_choice"] == "none" and continued["tools"] == body["tools"]
    final = ask(mock, continued, {"x-mock-seek": "nowhere to be found"}).json()
    assert final["choices"][0]["message"]["content"] == "Not found: nowhere to be found"


def test_json_mixed_turn_keeps_only_the_clients_call(mock):
    body = conversation()
    first = ask(mock, body, SEEK, {"x-mock-mixed": "Bash"}).json()
    turn = LOOP.turn(first)
    assert turn.client_calls == 1 and len(turn.retrieval) == 1
    merged = LOOP.merge([first])
    calls = merged["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["Bash"]
    assert merged["choices"][0]["finish_reason"] == "tool_calls"
    assert merged["usage"] == first["usage"] and TOOL_NAME not in json.dumps(merged)


def test_merge_of_an_answer_without_retrieval_is_that_answer(mock):
    plain = ask(mock, conversation()).json()  # the mock calls the client's tool
    assert LOOP.turn(plain).retrieval == () and LOOP.turn(plain).client_calls == 1
    assert LOOP.merge([plain]) == plain


# -- streams: the splicer -----------------------------------------------------------------------


@dataclass
class Spliced:
    """A stream that retrieved once, as the loop drives it."""

    out: bytes  # what the client got
    upstream: list[bytes]  # the two upstream streams
    splicer: Any
    turns: list[Turn]
    answers: list[list[ToolAnswer]]
    continued: dict  # the continuation request


def spliced_retrieval(mock, whole: bool, include_usage: bool = True) -> Spliced:
    extra = {"stream": True, **({"stream_options": {"include_usage": True}} if include_usage else {})}
    body = conversation(**extra)
    splicer = LOOP.splicer()
    upstream = [ask(mock, body, SEEK, USAGE).content]
    out = feed(splicer, upstream[0], whole)
    turn = splicer.turn()
    assert len(turn.retrieval) == 1 and turn.client_calls == 0
    assert turn.retrieval[0].arguments == {"key": KEY, "query": FACT}
    splicer.resume()
    answers = answers_for(turn)
    continued = LOOP.continue_with(body, turn, answers, last=False)
    upstream.append(ask(mock, continued, SEEK, USAGE).content)
    out += feed(splicer, upstream[1], whole)
    final = splicer.turn()
    assert final.retrieval == ()
    return Spliced(out + splicer.close(), upstream, splicer, [turn, final], [answers], continued)


@pytest.mark.parametrize("whole", [True, False], ids=["all-at-once", "event-by-event"])
def test_spliced_stream_is_one_completion(mock, whole):
    spliced = spliced_retrieval(mock, whole)
    out, upstream, splicer = spliced.out, spliced.upstream, spliced.splicer
    got = chunks(out)
    first = chunks(upstream[0])[0]
    assert got[-1] == "[DONE]" and got.count("[DONE]") == 1
    parts = [c for c in got if isinstance(c, dict)]
    assert {(c["id"], c["created"], c["model"], c["system_fingerprint"]) for c in parts} == \
        {(first["id"], first["created"], first["model"], first["system_fingerprint"])}
    assert TOOL_NAME.encode() not in out and b"tool_calls" not in out
    deltas = [c["choices"][0]["delta"] for c in parts if c["choices"]]
    assert sum(1 for d in deltas if "role" in d) == 1
    text = "".join(d.get("content") or "" for d in deltas)
    assert text == f"Let me look that up. Found: 311:2026-03-12 {FACT} by ops"
    finishes = [c["choices"][0]["finish_reason"] for c in parts if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["stop"]
    assert isinstance(got[-2], dict) and got[-2]["choices"] == []  # the usage chunk, then [DONE]
    total = added(usage_chunks(upstream[0])[0], usage_chunks(upstream[1])[0])
    assert usage_chunks(out) == [total] and splicer.usage == total
    assert splicer.visible() == {"role": "assistant", "content": text}


def test_spliced_stream_without_usage_chunk_sends_none(mock):
    spliced = spliced_retrieval(mock, whole=True, include_usage=False)
    out, upstream = spliced.out, spliced.upstream
    assert usage_chunks(upstream[0]) == [] and usage_chunks(out) == []
    assert chunks(out)[-1] == "[DONE]" and chunks(out).count("[DONE]") == 1


def test_spliced_stream_equals_the_merged_json(mock):
    """The client gets the same message whether it streamed or not."""
    body = conversation()
    first = ask(mock, body, SEEK).json()
    turn = LOOP.turn(first)
    merged = LOOP.merge([first, ask(mock, LOOP.continue_with(body, turn, answers_for(turn), False), SEEK).json()])
    assert spliced_retrieval(mock, whole=True).splicer.visible() == LOOP.turn(merged).message


def test_mixed_stream_holds_the_retrieval_call_and_renumbers_the_clients(mock):
    body = conversation(stream=True, stream_options={"include_usage": True})
    upstream = ask(mock, body, SEEK, {"x-mock-mixed": "Bash"}).content
    raw_calls = [tc for c in chunks(upstream) if isinstance(c, dict) and c["choices"]
                 for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert {tc["index"] for tc in raw_calls} == {0, 1}  # the retrieval call is index 0, the client's 1
    splicer = LOOP.splicer()
    out = feed(splicer, upstream, whole=False)
    turn = splicer.turn()
    assert len(turn.retrieval) == 1 and turn.client_calls == 1
    assert [c["function"]["name"] for c in turn.message["tool_calls"]] == [TOOL_NAME, "Bash"]
    out += splicer.close()
    assert TOOL_NAME.encode() not in out
    calls = [tc for c in chunks(out) if isinstance(c, dict) and c["choices"]
             for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert calls and {tc["index"] for tc in calls} == {0}
    assert calls[0]["function"]["name"] == "Bash"
    assert json.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"cmd": "x"}
    finishes = [c["choices"][0]["finish_reason"] for c in chunks(out) if isinstance(c, dict) and c["choices"]
                and c["choices"][0]["finish_reason"]]
    assert finishes == ["tool_calls"]
    assert usage_chunks(out) == usage_chunks(upstream)
    visible = splicer.visible()
    assert [c["function"]["name"] for c in visible["tool_calls"]] == ["Bash"]
    assert visible["content"] == "Let me look that up. "


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize("headers", [{}, {"x-mock-no-tools": "1"}], ids=["client-tool-call", "text"])
def test_stream_without_retrieval_passes_byte_for_byte_as_it_arrives(mock, headers, eol):
    body = conversation(stream=True, stream_options={"include_usage": True})
    upstream = ask(mock, body, headers).content.replace(b"\n", eol)
    events = [e + eol + eol for e in upstream.split(eol + eol) if e]
    splicer = LOOP.splicer()
    sent = [splicer.feed(event) for event in events]
    assert sent[0] == events[0]  # relayed at once: the first byte is not delayed
    assert b"".join(sent) + splicer.close() == upstream
    assert splicer.turn().retrieval == ()


# -- restore: the upstream's view comes back, byte for byte -------------------------------------


def stored(record: dict) -> dict:
    return json.loads(json.dumps(record))  # the store keeps JSON


def restored(body: dict, records: dict[str, dict]) -> dict:
    """What the loop does before compression: restore every recorded turn, last first."""
    body = json.loads(dumps(body))
    for index, key in reversed(LOOP.turn_keys(body)):
        if key in records:
            LOOP.restore(body, index, records[key])
    return body


def sdk_shaped(message: dict) -> dict:
    """The assistant message as the openai SDK's ``model_dump()`` gives it back."""
    calls = message.get("tool_calls")
    return {"content": message.get("content"), "refusal": None, "role": "assistant", "annotations": [],
            "audio": None, "function_call": None,
            "tool_calls": [{"id": c["id"], "function": {"arguments": c["function"]["arguments"],
                                                        "name": c["function"]["name"]}, "type": "function"}
                           for c in calls] if calls else None}


@pytest.mark.parametrize("stream", [False, True])
def test_restore_gives_back_the_prefix_the_upstream_saw(mock, stream):
    body = conversation()
    if stream:
        spliced = spliced_retrieval(mock, whole=True)
        turns, answers, continued = spliced.turns, spliced.answers, spliced.continued
        visible = spliced.splicer.visible()
    else:
        first = ask(mock, body, SEEK).json()
        turns = [LOOP.turn(first)]
        answers = [answers_for(turns[0])]
        continued = LOOP.continue_with(body, turns[0], answers[0], last=False)
        final = ask(mock, continued, SEEK).json()
        turns.append(LOOP.turn(final))
        visible = LOOP.turn(LOOP.merge([first, final])).message
    key, record = LOOP.record(visible, turns, answers)
    seen = continued["messages"] + [turns[-1].message]  # what the upstream saw, and answered

    # The client's next request: its conversation, the answer as it got it, a new question.
    question = {"role": "user", "content": "And who did it?"}
    for shape in (dict, sdk_shaped):
        later = {**body, "messages": [*body["messages"], shape(visible), question]}
        assert LOOP.turn_keys(later)[-1] == (len(body["messages"]), key)
        upstream_view = restored(later, {key: stored(record)})
        assert dumps(upstream_view["messages"][:len(seen)]) == dumps(seen)
        assert upstream_view["messages"][len(seen):] == [question]
        assert dumps(restored(later, {key: stored(record)})) == dumps(upstream_view)  # every later turn alike
    missing = restored(later, {})  # the store lost it: the conversation as the client sent it
    assert dumps(missing) == dumps(later)


def test_restore_of_a_mixed_turn_puts_the_retrieval_result_after_the_clients(mock):
    body = conversation()
    first = ask(mock, body, SEEK, {"x-mock-mixed": "Bash"}).json()
    turn = LOOP.turn(first)
    answers = answers_for(turn)
    visible = LOOP.turn(LOOP.merge([first])).message
    key, record = LOOP.record(visible, [turn], [answers])
    client_call = visible["tool_calls"][0]
    client_result = {"role": "tool", "tool_call_id": client_call["id"], "content": "exit 0"}
    later = {**body, "messages": [*body["messages"], sdk_shaped(visible), client_result]}
    upstream_view = restored(later, {key: stored(record)})
    expected = [*body["messages"], turn.message, client_result,
                {"role": "tool", "tool_call_id": turn.retrieval[0].id, "content": answers[0].text}]
    assert dumps(upstream_view["messages"]) == dumps(expected)
    # The careful model now has the fact, and answers.
    assert ask(mock, upstream_view, SEEK).json()["choices"][0]["message"]["content"] == \
        f"Found: 311:2026-03-12 {FACT} by ops"
    # On every later turn the same bytes, in the same place.
    final = {"role": "assistant", "content": "done"}
    even_later = {**later, "messages": [*later["messages"], final, {"role": "user", "content": "thanks"}]}
    again = restored(even_later, {key: stored(record)})
    assert dumps(again["messages"][:len(expected)]) == dumps(expected)


@pytest.mark.parametrize("record", [{}, {"turns": "x", "results": []}, {"turns": [], "results": []}])
def test_restore_of_a_bad_record_leaves_the_conversation_as_sent(record):
    body = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    before = dumps(body)
    LOOP.restore(body, 1, record)
    LOOP.restore(body, 0, {"turns": [{"role": "assistant", "content": "x"}], "results": []})  # not the model's
    assert dumps(body) == before


def test_turn_keys_ignore_turns_without_text_or_calls():
    body = {"messages": [{"role": "assistant", "content": None}, {"role": "assistant", "content": ""},
                         {"role": "assistant", "content": [{"type": "text", "text": "hi"}]}]}
    assert [i for i, _ in LOOP.turn_keys(body)] == [2]


def test_odd_events_pass_and_a_finish_chunk_with_text_is_split():
    """Comments, error events and unparsable data go out as they came; a provider that puts the
    last text in the finish chunk has the text relayed at once and only the finish held."""
    def event(obj) -> bytes:
        return b"data: " + dumps(obj) + b"\n\n"

    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    odd = [b": keep-alive\n\n", b"data: not json\n\n", event({"error": {"message": "overloaded"}}),
           event({**base, "choices": "x"})]
    splicer = LOOP.splicer()
    assert [splicer.feed(e) for e in odd] == odd
    last = event({**base, "choices": [{"index": 0, "delta": {"content": "bye"}, "finish_reason": "stop"}]})
    now = chunks(splicer.feed(last))
    assert now == [{**base, "choices": [{"index": 0, "delta": {"content": "bye"}, "finish_reason": None}]}]
    assert chunks(splicer.close()) == [{**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    assert splicer.visible() == {"role": "assistant", "content": "bye"}


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_left_with_only_retrieval_calls_ends_as_a_plain_answer(mock, stream):
    """When the loop stops at a turn that still calls the tool (an upstream that ignored
    ``tool_choice: none``), the client gets the text, no call, and ``stop``."""
    if stream:
        splicer = LOOP.splicer()
        upstream = ask(mock, conversation(stream=True), SEEK).content
        out = splicer.feed(upstream) + splicer.close()
        assert TOOL_NAME.encode() not in out and b"tool_calls" not in out
        finishes = [c["choices"][0]["finish_reason"] for c in chunks(out)
                    if isinstance(c, dict) and c["choices"] and c["choices"][0]["finish_reason"]]
        assert finishes == ["stop"] and splicer.visible() == {"role": "assistant", "content": "Let me look that up. "}
    else:
        merged = LOOP.merge([ask(mock, conversation(), SEEK).json()])
        assert merged["choices"][0]["finish_reason"] == "stop" and TOOL_NAME not in json.dumps(merged)
        assert merged["choices"][0]["message"]["content"] == "Let me look that up. "
