"""The Anthropic stream splicer on its own: real event bytes (as the mock upstream streams
them) fed in batches of every size, as the relay hands them over."""

from __future__ import annotations

import json

import pytest

from headroom.formats import ANTHROPIC
from headroom.formats.base import TOOL_NAME, ToolAnswer, split_events
from testkit.retrieving_anthropic import signature, stream_frames

USAGE = {"input_tokens": 100, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 50, "output_tokens": 7}


def message(*blocks: dict, stop: str = "end_turn", ident: str = "msg_1") -> dict:
    return {"id": ident, "type": "message", "role": "assistant", "model": "claude-x", "content": list(blocks),
            "stop_reason": stop, "stop_sequence": None, "usage": dict(USAGE)}


TEXT = {"type": "text", "text": "Let me get that line back."}
RETRIEVE = {"type": "tool_use", "id": "toolu_r", "name": TOOL_NAME, "input": {"key": "0123456789abcdef", "query": "x"}}
BASH = {"type": "tool_use", "id": "toolu_b", "name": "Bash", "input": {"command": "ls"}}
THOUGHT = {"type": "thinking", "thinking": "I need the line.", "signature": signature("I need the line.")}


def relayed(splicer, frames: list[bytes], batch: int) -> bytes:
    out = b""
    for i in range(0, len(frames), batch):
        out += splicer.feed(b"".join(frames[i:i + batch]))
    return out


def events_of(raw: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]


@pytest.mark.parametrize("batch", [1, 2, 3, 100])
def test_a_stream_without_a_retrieval_passes_byte_for_byte(batch):
    frames = stream_frames(message(THOUGHT, TEXT, BASH, stop="tool_use"))
    splicer = ANTHROPIC.tool_loop.splicer()
    out = relayed(splicer, frames, batch)
    turn = splicer.turn()
    assert not turn.retrieval and turn.client_calls == 1
    assert out + splicer.close() == b"".join(frames)
    assert turn.message["content"] == [THOUGHT, TEXT, BASH]  # rebuilt from the deltas, signature and all


@pytest.mark.parametrize("batch", [1, 2, 5, 100])
def test_a_retrieval_is_held_back_and_the_continuation_spliced_in(batch):
    loop = ANTHROPIC.tool_loop
    splicer = loop.splicer()
    first = relayed(splicer, stream_frames(message(THOUGHT, TEXT, RETRIEVE, BASH, stop="tool_use")), batch)
    turn = splicer.turn()
    assert [call.id for call in turn.retrieval] == ["toolu_r"] and turn.client_calls == 1
    assert turn.message["content"] == [THOUGHT, TEXT, RETRIEVE, BASH]
    body = loop.continue_with({"messages": []}, turn, [ToolAnswer(turn.retrieval[0], "42:the line")], last=True)
    assert body["tool_choice"] == {"type": "none"}
    assert body["messages"][-1]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_r",
                                                "content": "42:the line"}]
    splicer.resume()
    second = relayed(splicer, stream_frames(message(TEXT, ident="msg_2")), batch)
    raw = first + second + splicer.close()
    assert TOOL_NAME.encode() not in raw
    events = events_of(raw)
    kinds = [event["type"] for event in events]
    assert kinds.count("message_start") == 1 and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("ping") == 2  # pings pass as they come
    assert events[0]["message"]["id"] == "msg_1"
    starts = [(e["index"], e["content_block"]["type"]) for e in events if e["type"] == "content_block_start"]
    assert starts == [(0, "thinking"), (1, "text"), (2, "tool_use"), (3, "text")]
    blocks = {e["index"] for e in events if e["type"] in ("content_block_delta", "content_block_stop")}
    assert blocks == {0, 1, 2, 3}
    final = events[-2]
    assert final["delta"]["stop_reason"] == "end_turn"
    assert final["usage"] == {key: 2 * value for key, value in USAGE.items()}
    assert splicer.usage == final["usage"]
    visible = splicer.visible()["content"]
    assert visible == [THOUGHT, TEXT, BASH, TEXT]


def test_the_split_events_give_the_bytes_back():
    raw = b"".join(stream_frames(message(TEXT)))
    assert b"".join(split_events(raw)) == raw and len(split_events(raw)) == len(stream_frames(message(TEXT)))
