"""The Responses API's part of the retrieval loop (formats/_responses_tools.py), fed real-shaped
bodies and stream events: declaring the tool, a turn, the continuation (reasoning items
included), merging, the stream splicer, and putting the upstream's view back on later turns."""

from __future__ import annotations

import json

from headroom.formats import RESPONSES
from headroom.formats.base import INPUT_SCHEMA, TOOL_DESCRIPTION, TOOL_NAME, ToolAnswer, dumps, split_events

LOOP = RESPONSES.tool_loop
assert LOOP is not None
CLIENT_TOOL = {"type": "function", "name": "exec_command", "description": "Run a command.",
               "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}
OUR_TOOL = {"type": "function", "name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": INPUT_SCHEMA}
KEY = "3f9c0a1b2c3d4e5f"


# --- real-shaped answers and streams --------------------------------------------------------


def reasoning(n: int) -> dict:
    return {"id": f"rs_{n}", "type": "reasoning", "summary": [{"type": "summary_text", "text": f"think {n}"}],
            "encrypted_content": f"gAAAA-enc-{n}"}


def message(n: int, text: str) -> dict:
    return {"id": f"msg_{n}", "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]}


def call(n: int, name: str, args: dict, suffix: str = "") -> dict:
    return {"id": f"fc_{n}{suffix}", "type": "function_call", "status": "completed", "arguments": json.dumps(args),
            "call_id": f"call_{n}{suffix}", "name": name}


def retrieval(n: int, query: str = "needle") -> dict:
    return call(n, TOOL_NAME, {"key": KEY, "query": query}, "_r")


def usage(inp: int, out: int, cached: int = 0, reasoning_tokens: int = 0) -> dict:
    return {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens}, "total_tokens": inp + out}


def response(n: int, output: list, used: dict, status: str = "completed", **fields) -> dict:
    return {"id": f"resp_{n}", "object": "response", "created_at": 1700000000 + n, "status": status,
            "error": None, "incomplete_details": None, "instructions": None, "model": "gpt-5",
            "output": output, "parallel_tool_calls": True, "previous_response_id": None, "store": True,
            "tool_choice": "auto", "tools": [CLIENT_TOOL, OUR_TOOL], "usage": used, **fields}


def stream_of(resp: dict, end: str = "response.completed") -> bytes:
    """The SSE bytes the API sends for ``resp``: its lifecycle, then each item's events."""
    seq = iter(range(10_000))
    events: list[dict] = []
    opening = {**resp, "status": "in_progress", "output": [], "usage": None}
    events += [{"type": "response.created", "response": opening}, {"type": "response.in_progress", "response": opening}]
    for index, item in enumerate(resp["output"]):
        if item["type"] == "reasoning":
            events.append({"type": "response.output_item.added", "output_index": index,
                           "item": {"id": item["id"], "type": "reasoning", "summary": []}})
            text = item["summary"][0]["text"]
            events += [
                {"type": "response.reasoning_summary_part.added", "item_id": item["id"], "output_index": index,
                 "summary_index": 0, "part": {"type": "summary_text", "text": ""}},
                {"type": "response.reasoning_summary_text.delta", "item_id": item["id"], "output_index": index,
                 "summary_index": 0, "delta": text},
                {"type": "response.reasoning_summary_text.done", "item_id": item["id"], "output_index": index,
                 "summary_index": 0, "text": text},
                {"type": "response.reasoning_summary_part.done", "item_id": item["id"], "output_index": index,
                 "summary_index": 0, "part": {"type": "summary_text", "text": text}}]
        elif item["type"] == "message":
            text = item["content"][0]["text"]
            events.append({"type": "response.output_item.added", "output_index": index,
                           "item": {**item, "status": "in_progress", "content": []}})
            events.append({"type": "response.content_part.added", "item_id": item["id"], "output_index": index,
                           "content_index": 0, "part": {"type": "output_text", "annotations": [], "text": ""}})
            for piece in (text[: len(text) // 2], text[len(text) // 2:]):
                events.append({"type": "response.output_text.delta", "item_id": item["id"], "output_index": index,
                               "content_index": 0, "delta": piece, "logprobs": []})
            events.append({"type": "response.output_text.done", "item_id": item["id"], "output_index": index,
                           "content_index": 0, "text": text, "logprobs": []})
            events.append({"type": "response.content_part.done", "item_id": item["id"], "output_index": index,
                           "content_index": 0, "part": {"type": "output_text", "annotations": [], "text": text}})
        else:
            events.append({"type": "response.output_item.added", "output_index": index,
                           "item": {**item, "status": "in_progress", "arguments": ""}})
            args = item["arguments"]
            for piece in (args[:7], args[7:]):
                events.append({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                               "output_index": index, "delta": piece})
            events.append({"type": "response.function_call_arguments.done", "item_id": item["id"],
                           "output_index": index, "arguments": args})
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append({"type": end, "response": resp})
    out = b""
    for event in events:
        event["sequence_number"] = next(seq)
        out += b"event: " + event["type"].encode() + b"\ndata: " + dumps(event) + b"\n\n"
    return out


def in_chunks(splicer, data: bytes, size: int = 3) -> bytes:
    """Feed complete events a few at a time, as the relay hands them out."""
    events = split_events(data)
    return b"".join(splicer.feed(b"".join(events[i:i + size])) for i in range(0, len(events), size))


def parsed(data: bytes) -> list[dict]:
    out = []
    for event in split_events(data):
        lines = [line for line in event.decode().splitlines() if line.startswith("data: ")]
        if lines:
            out.append(json.loads(lines[0][6:]))
    return out


FIRST = response(1, [reasoning(1), message(1, "Let me look that up. "), retrieval(1)], usage(1000, 40, 0, 20))
SECOND = response(2, [reasoning(2), message(2, "Found: order 4711 shipped")], usage(1200, 30, 900, 10))


# --- declare, turn, continue_with, merge -----------------------------------------------------


def test_declare_appends_the_same_bytes_last_and_only_to_a_request_with_tools():
    tools = [CLIENT_TOOL]
    body = {"model": "gpt-5", "tools": tools, "input": "hi"}
    assert LOOP.declare(body) is True
    assert body["tools"][:-1] == [CLIENT_TOOL] and tools == [CLIENT_TOOL]  # the client's list is not mutated
    assert body["tools"][-1] == OUR_TOOL and "strict" not in body["tools"][-1]
    again = {"model": "gpt-5", "tools": [CLIENT_TOOL], "input": "later"}
    LOOP.declare(again)
    assert dumps(again["tools"]) == dumps(body["tools"])  # same bytes every time
    assert LOOP.declare(body) is False and len(body["tools"]) == 2  # already declared
    for without in ({"input": "hi"}, {"input": "hi", "tools": []}):
        assert LOOP.declare(without) is False and without.get("tools") in (None, [])


def test_turn_finds_the_retrieval_calls_and_counts_the_clients():
    mixed = response(3, [reasoning(3), message(3, "Looking."), retrieval(3), call(3, "exec_command", {"cmd": "ls"})],
                     usage(10, 5))
    turn = LOOP.turn(mixed)
    assert [(c.id, c.name, c.arguments) for c in turn.retrieval] == [("call_3_r", TOOL_NAME,
                                                                      {"key": KEY, "query": "needle"})]
    assert turn.client_calls == 1
    assert turn.message["items"] == mixed["output"] and turn.message["id"] == "resp_3"
    plain = LOOP.turn(SECOND)
    assert plain.retrieval == () and plain.client_calls == 0


def answered(turn, text: str = "12:order 4711 shipped") -> list[ToolAnswer]:
    return [ToolAnswer(c, text) for c in turn.retrieval]


def test_continue_with_sends_the_turn_reasoning_first_then_the_results():
    body = {"model": "gpt-5", "input": "Where is order 4711?", "tools": [CLIENT_TOOL, OUR_TOOL],
            "include": ["reasoning.encrypted_content"]}
    turn = LOOP.turn(FIRST)
    nxt = LOOP.continue_with(body, turn, answered(turn), last=False)
    assert body["input"] == "Where is order 4711?"  # the request itself is not changed
    assert nxt["input"] == [{"role": "user", "content": "Where is order 4711?"}, reasoning(1),
                            message(1, "Let me look that up. "), retrieval(1),
                            {"type": "function_call_output", "call_id": "call_1_r", "output": "12:order 4711 shipped"}]
    assert nxt["input"][1]["encrypted_content"] == "gAAAA-enc-1" and "tool_choice" not in nxt
    assert nxt["tools"] == body["tools"] and nxt["include"] == body["include"]
    final = LOOP.continue_with(nxt, turn, answered(turn), last=True)
    assert final["tool_choice"] == "none" and final["tools"] == body["tools"]


def test_continue_with_store_false_leaves_ids_out_and_server_state_chains():
    turn = LOOP.turn(FIRST)
    stateless = LOOP.continue_with({"input": [{"role": "user", "content": "q"}], "store": False}, turn,
                                   answered(turn), last=False)
    sent = stateless["input"][1:4]
    assert all("id" not in item for item in sent)  # the API refuses ids it never persisted
    assert sent[0]["encrypted_content"] == "gAAAA-enc-1" and sent[2]["call_id"] == "call_1_r"
    chained = LOOP.continue_with({"previous_response_id": "resp_0", "input": [{"role": "user", "content": "q"}]},
                                 turn, answered(turn), last=False)
    assert chained["previous_response_id"] == "resp_0" and chained["input"][1:4] == FIRST["output"]
    conversation = LOOP.continue_with({"conversation": "conv_1", "input": "q"}, turn, answered(turn), last=False)
    assert conversation["input"] == [{"type": "function_call_output", "call_id": "call_1_r",
                                      "output": "12:order 4711 shipped"}]


def test_merge_drops_the_retrieval_calls_and_sums_usage():
    merged = LOOP.merge([FIRST, SECOND])
    assert merged["output"] == [reasoning(1), message(1, "Let me look that up. "), reasoning(2),
                                message(2, "Found: order 4711 shipped")]
    assert merged["usage"] == {"input_tokens": 2200, "input_tokens_details": {"cached_tokens": 900},
                               "output_tokens": 70, "output_tokens_details": {"reasoning_tokens": 30},
                               "total_tokens": 2270}
    assert merged["id"] == "resp_2" and merged["created_at"] == FIRST["created_at"]  # the chain ends at the last
    assert merged["tools"] == [CLIENT_TOOL] and TOOL_NAME not in json.dumps(merged)
    incomplete = LOOP.merge([FIRST, {**SECOND, "status": "incomplete",
                                     "incomplete_details": {"reason": "max_output_tokens"}}])
    assert incomplete["status"] == "incomplete" and incomplete["incomplete_details"]["reason"] == "max_output_tokens"


# --- the splicer ------------------------------------------------------------------------------


def spliced(first: dict, second: dict | None = None) -> tuple[bytes, object]:
    splicer = LOOP.splicer()
    sent = in_chunks(splicer, stream_of(first))
    if second is not None:
        turn = splicer.turn()
        assert turn.retrieval and turn.client_calls == 0
        splicer.resume()
        sent += in_chunks(splicer, stream_of(second), size=4)
    assert splicer.turn().retrieval == () or second is None
    return sent + splicer.close(), splicer


def test_splicer_renumbers_the_continuation_and_ends_once_with_usage_summed():
    sent, splicer = spliced(FIRST, SECOND)
    events = parsed(sent)
    assert TOOL_NAME.encode() not in sent
    assert [e["sequence_number"] for e in events] == list(range(len(events)))  # monotonic, no gaps
    types = [e["type"] for e in events]
    assert types.count("response.created") == 1 and types.count("response.in_progress") == 1
    assert types.count("response.completed") == 1 and types[-1] == "response.completed"
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [e["output_index"] for e in added] == [0, 1, 2, 3]  # contiguous across both upstream calls
    done = {e["output_index"]: e["item"] for e in events if e["type"] == "response.output_item.done"}
    for e in events:  # every item event names the client's index of its item
        if "item_id" in e:
            assert done[e["output_index"]]["id"] == e["item_id"]
    final = events[-1]["response"]
    assert final["output"] == [done[i] for i in range(4)] == [reasoning(1), message(1, "Let me look that up. "),
                                                               reasoning(2), message(2, "Found: order 4711 shipped")]
    assert final["usage"] == LOOP.merge([FIRST, SECOND])["usage"] == splicer.usage
    assert final["id"] == events[0]["response"]["id"] == "resp_1"  # the stream keeps its identity
    assert final["tools"] == [CLIENT_TOOL] and events[0]["response"]["tools"] == [CLIENT_TOOL]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "Let me look that up. Found: order 4711 shipped"
    visible = splicer.visible()
    assert visible["id"] == "resp_1" and visible["items"] == final["output"]


def test_splicer_without_a_retrieval_passes_the_stream_byte_for_byte():
    plain = {**SECOND, "tools": [CLIENT_TOOL]}
    upstream = stream_of(plain)
    sent, splicer = spliced(plain)
    assert sent == upstream
    assert splicer.turn().retrieval == () and splicer.usage == plain["usage"]
    # the tool Headroom declared is left out of the echo, nothing else changes
    sent, _ = spliced(SECOND)
    assert TOOL_NAME.encode() not in sent and len(parsed(sent)) == len(parsed(stream_of(SECOND)))


def test_splicer_mixed_answer_keeps_the_clients_call_renumbered():
    mixed = response(5, [message(5, "Looking."), retrieval(5), call(5, "exec_command", {"cmd": "ls"})], usage(50, 9))
    splicer = LOOP.splicer()
    sent = in_chunks(splicer, stream_of(mixed), size=1)
    turn = splicer.turn()
    assert [c.id for c in turn.retrieval] == ["call_5_r"] and turn.client_calls == 1
    sent += splicer.close()
    events = parsed(sent)
    assert TOOL_NAME.encode() not in sent
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    client_call = [e for e in events if e.get("item_id") == "fc_5" or e.get("item", {}).get("id") == "fc_5"]
    assert client_call and {e["output_index"] for e in client_call} == {1}  # was 2 upstream
    assert [i["type"] for i in events[-1]["response"]["output"]] == ["message", "function_call"]
    assert events[-1]["response"]["usage"] == mixed["usage"]


def test_splicer_ends_an_incomplete_answer_as_incomplete():
    cut = {**SECOND, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    splicer = LOOP.splicer()
    sent = splicer.feed(stream_of(FIRST))
    splicer.turn()
    splicer.resume()
    sent += splicer.feed(stream_of(cut, end="response.incomplete")) + splicer.close()
    last = parsed(sent)[-1]
    assert last["type"] == "response.incomplete" and last["response"]["status"] == "incomplete"
    assert [e["type"] for e in parsed(sent)].count("response.completed") == 0


def test_splicer_relays_as_it_goes():
    splicer = LOOP.splicer()
    events = split_events(stream_of(FIRST))
    first = parsed(splicer.feed(events[0]))
    assert first == [{**parsed(events[0])[0], "response": {**FIRST, "status": "in_progress", "output": [],
                                                           "usage": None, "tools": [CLIENT_TOOL]}}]
    held = splicer.feed(b"".join(e for e in events if b'"call_1_r"' in e))
    assert held == b""  # the retrieval call's own events are held back


# --- turn_keys, record, restore ---------------------------------------------------------------


def sdk_resent(items: list) -> list:
    """What an SDK sends back for items it got: ids dropped, only the fields it knows."""
    out = []
    for item in items:
        if item["type"] == "message":
            out.append({"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": item["content"][0]["text"]}]})
        elif item["type"] == "reasoning":
            out.append({"type": "reasoning", "summary": item["summary"],
                        "encrypted_content": item["encrypted_content"]})
        else:
            out.append({k: item[k] for k in ("type", "call_id", "name", "arguments")})
    return out


def restored(body: dict, saved: dict, fps) -> dict:
    """What the loop does on a later request: look every turn key up, restore from the last."""
    stored = {fp: json.loads(dumps(saved)) for fp in ((fps,) if isinstance(fps, str) else fps)}
    for index, fp in sorted(LOOP.turn_keys(body), reverse=True):
        if fp in stored:
            LOOP.restore(body, index, stored[fp])
    return body


def test_a_merged_turn_is_put_back_byte_for_byte():
    for store in (True, False):
        request = {"model": "gpt-5", "store": store, "input": [{"role": "user", "content": "Where is order 4711?"}]}
        first, second = {**FIRST, "store": store}, {**SECOND, "store": store}  # the API echoes store
        turn1 = LOOP.turn(first)
        continuation = LOOP.continue_with(request, turn1, answered(turn1), last=False)
        splicer = LOOP.splicer()
        splicer.feed(stream_of(first))
        splicer.turn()
        splicer.resume()
        splicer.feed(stream_of(second))
        fps, saved = LOOP.record(splicer.visible(), [turn1, splicer.turn()], [answered(turn1)])
        assert (isinstance(fps, tuple) and len(fps) == 2) is store  # a stored response is found by its id too
        later = {**request, "input": [*request["input"], *sdk_resent(splicer.visible()["items"]),
                                      {"role": "user", "content": "And the customer?"}]}
        restored(later, saved, fps)
        prefix = continuation["input"]
        assert dumps(later["input"][:len(prefix)]) == dumps(prefix)  # what the upstream saw, same bytes
        second_turn = [i if store else {k: v for k, v in i.items() if k != "id"} for i in SECOND["output"]]
        assert later["input"][len(prefix):] == [*second_turn, {"role": "user", "content": "And the customer?"}]
        again = json.loads(dumps(later))
        restored(again, saved, fps)  # a restored conversation stays as it is
        assert dumps(again) == dumps(later)


def test_a_mixed_turn_gets_its_retrieval_call_and_result_back_after_the_clients():
    mixed = response(5, [message(5, "Looking."), retrieval(5), call(5, "exec_command", {"cmd": "ls"})], usage(50, 9))
    turn = LOOP.turn(mixed)
    visible = LOOP.turn(LOOP.merge([mixed])).message
    fps, saved = LOOP.record(visible, [turn], [answered(turn)])
    client_result = {"type": "function_call_output", "call_id": "call_5", "output": "a.txt\nb.txt"}
    later = {"input": [{"role": "user", "content": "q"}, *sdk_resent(visible["items"]), client_result]}
    restored(later, saved, fps)
    upstream_turn = mixed["output"]
    retrieved = {"type": "function_call_output", "call_id": "call_5_r", "output": "12:order 4711 shipped"}
    assert later["input"] == [{"role": "user", "content": "q"}, *upstream_turn, client_result, retrieved]
    # the next turn too: the same bytes in the same place
    nxt = {"input": [{"role": "user", "content": "q"}, *sdk_resent(visible["items"]), client_result,
                     message(6, "Done."), {"role": "user", "content": "thanks"}]}
    restored(nxt, saved, fps)
    assert dumps(nxt["input"][:len(later["input"])]) == dumps(later["input"])


def test_previous_response_id_is_pointed_at_the_response_that_holds_the_loop():
    turn1 = LOOP.turn(FIRST)
    turn2 = LOOP.turn(SECOND)
    fps, saved = LOOP.record({"id": "resp_1", "store": True, "items": LOOP.merge([FIRST, SECOND])["output"]},
                             [turn1, turn2], [answered(turn1)])
    later = {"previous_response_id": "resp_1", "input": [{"role": "user", "content": "And the customer?"}]}
    restored(later, saved, fps)
    assert later == {"previous_response_id": "resp_2", "input": [{"role": "user", "content": "And the customer?"}]}
    # a mixed turn held by the server: its retrieval result follows the client's results
    mixed = response(7, [message(7, "Looking."), retrieval(7), call(7, "exec_command", {"cmd": "ls"})], usage(5, 5))
    turn = LOOP.turn(mixed)
    fps, saved = LOOP.record(LOOP.turn(LOOP.merge([mixed])).message, [turn], [answered(turn)])
    client_result = {"type": "function_call_output", "call_id": "call_7", "output": "ok"}
    for state in ({"previous_response_id": "resp_7"}, {"conversation": "conv_1"}):
        later = {**state, "input": [client_result]}
        restored(later, saved, fps)
        assert later["input"] == [client_result, {"type": "function_call_output", "call_id": "call_7_r",
                                                  "output": "12:order 4711 shipped"}]
        assert later.get("previous_response_id") in (None, "resp_7")


def test_restore_leaves_a_turn_it_does_not_know_alone():
    turn1 = LOOP.turn(FIRST)
    _, saved = LOOP.record(LOOP.turn(LOOP.merge([FIRST, SECOND])).message, [turn1, LOOP.turn(SECOND)],
                           [answered(turn1)])
    other = {"input": [{"role": "user", "content": "q"}, message(9, "Something else."),
                       {"role": "user", "content": "more"}]}
    before = dumps(other)
    LOOP.restore(other, 1, saved)  # a fingerprint that does not match the turn there
    assert dumps(other) == before
    assert LOOP.turn_keys({"input": "just text"}) == []
    assert LOOP.turn_keys({"previous_response_id": "resp_x", "input": "q"})[0][0] == 0


def test_splicer_reads_crlf_streams_and_passes_comments_on():
    lf, _ = spliced(FIRST, SECOND)
    splicer = LOOP.splicer()
    crlf = stream_of(FIRST).replace(b"\n", b"\r\n")
    sent = splicer.feed(b": keep-alive\r\n\r\n" + crlf)
    assert sent.startswith(b": keep-alive\r\n\r\n")
    splicer.turn()
    splicer.resume()
    sent += splicer.feed(stream_of(SECOND).replace(b"\n", b"\r\n")) + splicer.close()
    assert parsed(sent) == parsed(lf)
