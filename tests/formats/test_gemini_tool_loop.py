"""Gemini's retrieval-tool loop and stream splicer, fed answers and SSE bytes shaped like the
Gemini API's (``json.dumps`` spacing and CRLF event ends, as Google sends them), and checked
with the real ``google-genai`` types the SDK parses them into."""

from __future__ import annotations

import copy
import json

from google.genai import types

from headroom.formats import GEMINI
from headroom.formats.base import ToolAnswer, data_of, dumps, split_events
from headroom.transforms.retrieval import INPUT_SCHEMA, TOOL_DESCRIPTION, TOOL_NAME

LOOP = GEMINI.tool_loop
assert LOOP is not None
MODEL = "gemini-2.5-flash"
SIGNATURE = "CiQBVKhc7ZrxxV3mock+signature/AAAA=="
CALL = {"name": TOOL_NAME, "args": {"key": "3f9c0a1b2c3d4e5f", "query": "ord_00150"}}


def _event(chunk: dict) -> bytes:
    return b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n"


def _chunk(parts: list | None, response_id: str, usage: dict, finish: str | None = None) -> dict:
    candidate: dict = {}
    if parts is not None:
        candidate["content"] = {"parts": parts, "role": "model"}
    if finish:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": MODEL, "responseId": response_id}


def _usage(prompt: int, output: int | None = None, thoughts: int = 0, cached: int = 0) -> dict:
    usage: dict = {"promptTokenCount": prompt}
    if output is not None:
        usage["candidatesTokenCount"] = output
    usage["totalTokenCount"] = prompt + (output or 0) + thoughts
    if cached:
        usage["cachedContentTokenCount"] = cached
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _answer(parts: list, response_id: str, usage: dict) -> dict:
    return _chunk(parts, response_id, usage, "STOP")


def _request(tools: bool = True) -> dict:
    body: dict = {"contents": [{"role": "user", "parts": [{"text": "Why did ord_00150 fail?"}]}],
                  "generationConfig": {"thinkingConfig": {"includeThoughts": True}}}
    if tools:
        body["tools"] = [{"functionDeclarations": [{"name": "list_orders", "description": "List orders",
                                                    "parameters": {"type": "OBJECT", "properties": {
                                                        "limit": {"type": "INTEGER"}}}}]}]
    return body


def _sse(events: bytes) -> list[dict]:
    return [json.loads(data_of(e)) for e in split_events(events)]


def _texts(chunks: list[dict]) -> str:
    return "".join(types.GenerateContentResponse.model_validate(c).text or "" for c in chunks)


def _calls(chunks: list[dict]) -> list[str]:
    return [p["functionCall"]["name"] for c in chunks for cand in c.get("candidates", [])
            for p in cand.get("content", {}).get("parts", []) if "functionCall" in p]


# --- declare ---------------------------------------------------------------------------------


def test_declare_appends_the_tool_last_as_a_schema_gemini_accepts():
    body = _request()
    assert LOOP.declare(body)
    assert body["tools"][0] == _request()["tools"][0]
    declared = body["tools"][-1]
    (declaration,) = declared["functionDeclarations"]
    assert declaration["name"] == TOOL_NAME and declaration["description"] == TOOL_DESCRIPTION
    params = declaration["parameters"]
    assert params["type"] == "OBJECT" and params["required"] == INPUT_SCHEMA["required"]
    assert set(params["properties"]) == set(INPUT_SCHEMA["properties"])
    assert all(p["type"] == "STRING" for p in params["properties"].values())
    assert "additionalProperties" not in json.dumps(params)  # refused by the Developer API
    # The SDK's own model (extra fields forbidden) takes it and gives the same fields back.
    parsed = types.Tool.model_validate(declared).model_dump(by_alias=True, exclude_none=True, mode="json")
    assert parsed == declared

    again = _request()
    LOOP.declare(again)
    assert dumps(again["tools"]) == dumps(body["tools"])  # the same bytes every time
    assert again["tools"][-1] is not body["tools"][-1]
    assert not LOOP.declare(body)  # already there
    assert len(body["tools"]) == 2


def test_declare_leaves_requests_without_function_tools_alone():
    for body in (_request(tools=False), {**_request(tools=False), "tools": []},
                 {**_request(tools=False), "tools": [{"googleSearch": {}}]},
                 {**_request(), "generationConfig": {"candidateCount": 2}}):
        before = copy.deepcopy(body)
        assert not LOOP.declare(body)
        assert body == before


def test_declare_leaves_a_stream_asked_as_one_json_array_alone():
    """``streamGenerateContent`` answers a JSON array of chunks unless asked for SSE: the loop
    does not read it, so the tool is not declared there."""
    stream = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    for query in ({}, {"alt": ["json"]}, {"alt": ["sse", "json"]}, {"key": ["k"]}):
        body = _request()
        before = copy.deepcopy(body)
        assert not LOOP.declare(body, stream, query)
        assert body == before
    assert LOOP.declare(_request(), stream, {"alt": ["sse"], "key": ["k"]})
    assert LOOP.declare(_request(), "/v1beta/models/gemini-2.5-flash:generateContent", {})
    assert LOOP.declare(_request(), "/v1/models/gemini-2.5-flash:generateContent", None)


# --- turn and continue_with ------------------------------------------------------------------


def _thinking_answer() -> dict:
    parts = [{"text": "The user wants the failure reason.", "thought": True},
             {"text": "Let me look that up. "},
             {"functionCall": CALL, "thoughtSignature": SIGNATURE}]
    return _answer(parts, "resp-1", _usage(400, 20, thoughts=30))


def test_turn_finds_the_call_and_keeps_the_model_content_as_sent():
    answer = _thinking_answer()
    turn = LOOP.turn(answer)
    assert turn.client_calls == 0
    (call,) = turn.retrieval
    assert call.name == TOOL_NAME and call.arguments == CALL["args"]
    assert call.id == "part-2"  # no id from Gemini: named by its position
    assert turn.message == answer["candidates"][0]["content"]

    with_id = _answer([{"functionCall": {**CALL, "id": "fc-7"}}, {"functionCall": {"name": "list_orders"}}],
                      "r", _usage(1, 1))
    mixed = LOOP.turn(with_id)
    assert [c.id for c in mixed.retrieval] == ["fc-7"] and mixed.client_calls == 1
    assert LOOP.turn({"promptFeedback": {"blockReason": "SAFETY"}}).retrieval == ()


def test_continue_with_sends_the_turn_back_exactly_and_the_results_as_function_responses():
    body = _request()
    LOOP.declare(body)
    before = copy.deepcopy(body)
    turn = LOOP.turn(_thinking_answer())
    answer = ToolAnswer(turn.retrieval[0], "12:ord_00150 failed: card declined")
    nxt = LOOP.continue_with(body, turn, [answer], last=False)
    assert body == before  # the request it continues is not touched
    assert nxt["contents"][:-2] == body["contents"] and nxt["tools"] == body["tools"]
    model, results = nxt["contents"][-2:]
    assert dumps(model) == dumps(_thinking_answer()["candidates"][0]["content"])  # thought + signature kept
    assert model["parts"][2]["thoughtSignature"] == SIGNATURE
    assert results == {"role": "user", "parts": [{"functionResponse": {
        "name": TOOL_NAME, "response": {"content": "12:ord_00150 failed: card declined"}}}]}
    assert "toolConfig" not in nxt
    for content in nxt["contents"]:
        types.Content.model_validate(content)

    with_id = LOOP.turn(_answer([{"functionCall": {**CALL, "id": "fc-7"}}], "r", _usage(1, 1)))
    error = ToolAnswer(with_id.retrieval[0], "key expired", error=True)
    body["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [TOOL_NAME]}}
    last = LOOP.continue_with(body, with_id, [error], last=True)
    assert last["contents"][-1]["parts"] == [{"functionResponse": {
        "id": "fc-7", "name": TOOL_NAME, "response": {"error": "key expired"}}}]
    assert last["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}
    assert last["tools"] == body["tools"]


# --- merge -----------------------------------------------------------------------------------


def _final_answer() -> dict:
    return {**_answer([{"text": "Found: ord_00150 failed: card declined"}], "resp-2",
                      _usage(520, 12, thoughts=8, cached=400)), "modelVersion": "gemini-2.5-flash-002"}


def test_merge_is_one_answer_without_the_retrieval_call_and_with_usage_summed():
    merged = LOOP.merge([_thinking_answer(), _final_answer()])
    assert merged["responseId"] == "resp-1" and merged["modelVersion"] == MODEL
    (candidate,) = merged["candidates"]
    assert candidate["finishReason"] == "STOP" and candidate["content"]["role"] == "model"
    assert candidate["content"]["parts"] == [
        {"text": "The user wants the failure reason.", "thought": True},
        {"text": "Let me look that up. "}, {"text": "Found: ord_00150 failed: card declined"}]
    assert merged["usageMetadata"] == {
        "promptTokenCount": 920, "candidatesTokenCount": 32, "totalTokenCount": 450 + 540,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 920}], "thoughtsTokenCount": 38,
        "cachedContentTokenCount": 400}
    parsed = types.GenerateContentResponse.model_validate(merged)
    assert parsed.text == "Let me look that up. Found: ord_00150 failed: card declined"
    assert not parsed.function_calls

    finish_of_last = LOOP.merge([_thinking_answer(), _chunk([{"text": "cut"}], "x", _usage(1, 1), "MAX_TOKENS")])
    assert finish_of_last["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_merge_of_a_mixed_answer_keeps_only_the_clients_call():
    mixed = _answer([{"text": "Checking. "}, {"functionCall": CALL, "thoughtSignature": SIGNATURE},
                     {"functionCall": {"name": "list_orders", "args": {"limit": 5}}}], "m", _usage(10, 5))
    merged = LOOP.merge([mixed])
    assert _calls([merged]) == ["list_orders"]
    assert merged["usageMetadata"] == mixed["usageMetadata"]


# --- the splicer -----------------------------------------------------------------------------


def test_a_stream_that_retrieves_nothing_goes_out_byte_for_byte_and_at_once():
    events = [_event(_chunk([{"text": "Hello"}], "s1", _usage(50))),
              _event(_chunk([{"text": " there"}], "s1", _usage(50))),
              _event(_chunk([{"text": "."}], "s1", _usage(50, 3), "STOP"))]
    splicer = LOOP.splicer()
    assert splicer.feed(events[0]) == events[0]  # relayed as it comes
    assert splicer.feed(events[1] + events[2]) == events[1]  # the end is held
    assert splicer.turn().retrieval == ()
    assert splicer.close() == events[2]
    assert splicer.usage == _usage(50, 3)
    assert splicer.visible() == {"role": "model", "parts": [{"text": "Hello there."}]}


def _first_stream() -> list[bytes]:
    return [_event(_chunk([{"text": "Let me look "}], "s1", _usage(400))),
            _event(_chunk([{"text": "that up. "}], "s1", _usage(400))),
            _event(_chunk([{"functionCall": CALL, "thoughtSignature": SIGNATURE}], "s1", _usage(400, 20, 30),
                          "STOP"))]


def _second_stream() -> list[bytes]:
    return [_event(_chunk([{"text": "Found: ord_00150 "}], "s2", _usage(520))),
            _event(_chunk([{"text": "failed: card declined"}], "s2", _usage(520, 12, 8, cached=400), "STOP"))]


def test_a_retrieval_is_spliced_into_one_stream():
    splicer = LOOP.splicer()
    out = [splicer.feed(e) for e in _first_stream()]
    assert out[0] == _first_stream()[0] and out[2] == b""  # the call is held back
    turn = splicer.turn()
    (call,) = turn.retrieval
    assert call.arguments == CALL["args"]
    assert turn.message == {"role": "model", "parts": [{"text": "Let me look that up. "},
                                                       {"functionCall": CALL, "thoughtSignature": SIGNATURE}]}
    splicer.resume()
    out += [splicer.feed(e) for e in _second_stream()]
    assert out[-1] == b""
    out.append(splicer.close())

    chunks = _sse(b"".join(out))
    assert TOOL_NAME.encode() not in b"".join(out)
    assert {c["responseId"] for c in chunks} == {"s1"} and {c["modelVersion"] for c in chunks} == {MODEL}
    finishes = [c["candidates"][0].get("finishReason") for c in chunks]
    assert finishes[-1] == "STOP" and finishes[:-1] == [None] * (len(chunks) - 1)
    total = chunks[-1]["usageMetadata"]
    assert total["promptTokenCount"] == 920 and total["candidatesTokenCount"] == 32
    assert total["totalTokenCount"] == 450 + 540 and total["cachedContentTokenCount"] == 400
    assert splicer.usage == total
    # A continuation's usage counts the first call too (the latest chunk always holds the total so far).
    assert chunks[2]["usageMetadata"]["promptTokenCount"] == 920
    assert _texts(chunks) == "Let me look that up. Found: ord_00150 failed: card declined"
    # The same answers, not streamed, merge to the same text.
    whole = LOOP.merge([_answer([{"text": "Let me look that up. "}, {"functionCall": CALL}], "s1", _usage(1, 1)),
                        _answer([{"text": "Found: ord_00150 failed: card declined"}], "s2", _usage(1, 1))])
    assert types.GenerateContentResponse.model_validate(whole).text == _texts(chunks)
    assert splicer.visible() == {"role": "model", "parts": [
        {"text": "Let me look that up. Found: ord_00150 failed: card declined"}]}


def test_events_that_arrive_together_are_read_in_order():
    first = _first_stream()
    splicer = LOOP.splicer()
    assert splicer.feed(first[0] + first[1]) == first[0] + first[1]  # relayed unread
    assert splicer.feed(b": ping\r\n\r\n" + first[2]) == b": ping\r\n\r\n"
    assert splicer.turn().message["parts"] == [{"text": "Let me look that up. "},
                                               {"functionCall": CALL, "thoughtSignature": SIGNATURE}]
    assert splicer.usage == _usage(400, 20, 30)


def test_text_in_the_chunk_that_ends_a_retrieving_stream_goes_out_before_the_continuation():
    splicer = LOOP.splicer()
    end = _event(_chunk([{"text": "Checking."}, {"functionCall": CALL}], "s1", _usage(10, 4), "STOP"))
    assert splicer.feed(end) == b""
    splicer.resume()
    first = _sse(splicer.feed(_second_stream()[0]))
    assert [c["candidates"][0]["content"]["parts"] for c in first] == [[{"text": "Checking."}],
                                                                       [{"text": "Found: ord_00150 "}]]
    assert "finishReason" not in first[0]["candidates"][0]
    assert first[0]["usageMetadata"]["promptTokenCount"] == 10


def test_a_mixed_stream_hands_the_client_its_own_call_only():
    splicer = LOOP.splicer()
    lead = _event(_chunk([{"text": "Checking. "}], "s1", _usage(10)))
    calls = _event(_chunk([{"functionCall": CALL, "thoughtSignature": SIGNATURE},
                           {"functionCall": {"name": "list_orders", "args": {"limit": 5}}}], "s1", _usage(10, 6),
                          "STOP"))
    out = splicer.feed(lead) + splicer.feed(calls)
    turn = splicer.turn()
    assert len(turn.retrieval) == 1 and turn.client_calls == 1
    out += splicer.close()
    chunks = _sse(out)
    assert _calls(chunks) == ["list_orders"]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"] == _usage(10, 6)
    for chunk in chunks:
        types.GenerateContentResponse.model_validate(chunk)


def test_errors_and_comments_in_a_stream_pass_untouched():
    splicer = LOOP.splicer()
    error = b'data: {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}\r\n\r\n'
    assert splicer.feed(b": keep-alive\r\n\r\n" + error) == b": keep-alive\r\n\r\n" + error


# --- record and restore ----------------------------------------------------------------------


def _as_the_sdk_resends(content: dict) -> dict:
    """A model content the way google-genai puts it back into the next request."""
    return types.Content.model_validate(content).model_dump(by_alias=True, exclude_none=True, mode="json")


def _stored(record: dict) -> dict:
    return json.loads(json.dumps(record))  # through the store and back


def test_restore_puts_back_exactly_what_the_upstream_saw():
    body = _request()
    LOOP.declare(body)
    first, final = _thinking_answer(), _final_answer()
    turn1 = LOOP.turn(first)
    answers = [ToolAnswer(turn1.retrieval[0], "12:ord_00150 failed: card declined")]
    second_request = LOOP.continue_with(body, turn1, answers, last=False)
    turn2 = LOOP.turn(final)
    merged = LOOP.merge([first, final])
    visible = LOOP.turn(merged).message
    fingerprint, record = LOOP.record(visible, [turn1, turn2], [answers])

    follow_up = {"role": "user", "parts": [{"text": "And the region?"}]}
    later = {**body, "contents": [*body["contents"], _as_the_sdk_resends(visible), follow_up]}
    keys = LOOP.turn_keys(later)
    assert keys == [(1, fingerprint)]
    LOOP.restore(later, 1, _stored(record))
    upstream_saw = [*second_request["contents"], final["candidates"][0]["content"]]
    assert dumps(later["contents"][:len(upstream_saw)]) == dumps(upstream_saw)  # byte for byte
    assert later["contents"][-1] == follow_up
    assert fingerprint not in dict(LOOP.turn_keys(later)).values()  # restored once, not again


def test_a_streamed_turn_is_found_again_however_the_client_split_its_text():
    splicer = LOOP.splicer()
    for event in _first_stream():
        splicer.feed(event)
    turn1 = splicer.turn()
    splicer.resume()
    for event in _second_stream():
        splicer.feed(event)
    turn2 = splicer.turn()
    splicer.close()
    answers = [ToolAnswer(turn1.retrieval[0], "12:ord_00150 failed: card declined")]
    fingerprint, record = LOOP.record(splicer.visible(), [turn1, turn2], [answers])
    # Resent as the stream's chunks came, one part per chunk.
    resent = {"role": "model", "parts": [{"text": "Let me look "}, {"text": "that up. "},
                                         {"text": "Found: ord_00150 "}, {"text": "failed: card declined"}]}
    later = {"contents": [_request()["contents"][0], resent, {"role": "user", "parts": [{"text": "ok"}]}]}
    assert LOOP.turn_keys(later) == [(1, fingerprint)]
    LOOP.restore(later, 1, _stored(record))
    assert later["contents"][1] == turn1.message and later["contents"][3] == turn2.message
    assert later["contents"][2]["parts"][0]["functionResponse"]["response"] == {
        "content": "12:ord_00150 failed: card declined"}


def test_a_mixed_turns_results_go_after_the_clients_own_on_every_later_request():
    mixed = _answer([{"text": "Checking. "}, {"functionCall": CALL, "thoughtSignature": SIGNATURE},
                     {"functionCall": {"name": "list_orders", "args": {"limit": 5}}}], "m", _usage(10, 5))
    turn = LOOP.turn(mixed)
    answers = [ToolAnswer(turn.retrieval[0], "12:ord_00150 failed")]
    visible = LOOP.turn(LOOP.merge([mixed])).message
    fingerprint, record = LOOP.record(visible, [turn], [answers])

    client_result = {"functionResponse": {"name": "list_orders", "response": {"output": "[...]"}}}
    contents = [_request()["contents"][0], _as_the_sdk_resends(visible),
                {"role": "user", "parts": [client_result]}]
    restored = []
    for _ in range(2):  # the same bytes on every later turn
        later = {"contents": copy.deepcopy(contents)}
        assert LOOP.turn_keys(later)[0] == (1, fingerprint)
        LOOP.restore(later, 1, _stored(record))
        restored.append(dumps(later))
        contents.append({"role": "model", "parts": [{"text": "Done."}]})
        contents.append({"role": "user", "parts": [{"text": "next"}]})
    assert restored[1].startswith(restored[0][:-2])  # the first restore's contents are a prefix of the second's
    model, results = later["contents"][1:3]
    assert model == turn.message
    assert results["parts"] == [client_result, {"functionResponse": {
        "name": TOOL_NAME, "response": {"content": "12:ord_00150 failed"}}}]
    calls = sum("functionCall" in p for p in model["parts"])
    assert calls == sum("functionResponse" in p for p in results["parts"])  # as Gemini requires


def test_restore_without_a_matching_turn_changes_nothing():
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    before = copy.deepcopy(body)
    LOOP.restore(body, 0, {"contents": [{"role": "model", "parts": []}], "pending": []})  # not a model turn
    LOOP.restore(body, 5, {"contents": [{"role": "model", "parts": []}], "pending": []})
    LOOP.restore(body, 0, {"junk": True})
    assert body == before
    assert LOOP.turn_keys({"contents": [{"role": "model", "parts": [{"text": ""}]}]}) == []

