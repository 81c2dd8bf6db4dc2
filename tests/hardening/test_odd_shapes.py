"""Odd but legal request shapes: forwarded unchanged, and never a crash in a transform.

Through a real proxy to the mock upstream, which records the exact bytes it received.
Where no compression applies the upstream gets the client's bytes, byte for byte; where it
applies (big tool outputs), every needle the question asks about arrives intact and
nothing outside the tool outputs changes.
"""

from __future__ import annotations

import base64
import json
import re

import pytest

from testkit.llm_requests import ANTHROPIC_HEADERS, HTTP, OPENAI_HEADERS
from testkit.waiting import wait_for

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4).decode()
PDF = base64.b64encode(b"%PDF-1.4\n" + bytes(range(256)) * 8).decode()
# One character from every unicode plane (0-16), combining marks, right-to-left text, a BOM
# and line/paragraph separators inside a string, emoji with modifiers.
PLANES = "".join(chr(plane * 0x10000 + 0x4E2D if plane == 0 else plane * 0x10000 + 0x101) for plane in range(17))
UNICODE = PLANES + " e\u0301 \u05e9\u05dc\u05d5\u05dd \ufeff \u2028 \u2029 \U0001f469\U0001f3fd\u200d\U0001f680"
BINARY = "".join(chr(i) for i in range(32)) + "\x7f\x80\x9f\xa0\xff\ufffd\ufffe\uffff"
SURROGATES = ["\ud800", "\udfff", "\udc00\ud800", "x\ud83d", "\ud83d\ude00"]


def _dumps(body: dict, ensure_ascii: bool = True) -> bytes:
    """JSON as an SDK writes it: ``\\uXXXX`` escapes, or raw UTF-8 (lone surrogates, which
    have no UTF-8 form, still as escapes)."""
    text = json.dumps(body, ensure_ascii=ensure_ascii)
    return re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text).encode("utf-8")


def _anthropic(messages: list, **extra) -> dict:
    return {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": messages, **extra}


def _tool_turn(content, tool: str = "Bash", command: str = "run-it", **result) -> list:
    return [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": tool,
                                           "input": {"command": command}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": content, **result}]},
    ]


ANTHROPIC_ODD = {
    "content-null": _anthropic([{"role": "user", "content": None}]),
    "content-missing": _anthropic([{"role": "user"}]),
    "unknown-block-types": _anthropic([{"role": "user", "content": [
        {"type": "quantum_block", "payload": {"x": [1, 2, {"y": None}]}}, {"type": "text", "text": "hi"},
        {"no_type": True}, "a bare string", 42, None]}]),
    "image-and-document": _anthropic([{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
         "title": "spec", "citations": {"enabled": True}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "text", "text": "what is this?", "cache_control": {"type": "ephemeral"}}]}]),
    "empty-tool-result-string": _anthropic(_tool_turn("")),
    "empty-tool-result-list": _anthropic(_tool_turn([])),
    "tool-result-null": _anthropic(_tool_turn(None)),
    "tool-result-no-content": _anthropic(_tool_turn("x")[:2] + [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1"}]}]),
    "tool-result-error": _anthropic(_tool_turn("E" * 5000, is_error=True)),
    "tool-result-list-of-blocks": _anthropic(_tool_turn([
        {"type": "text", "text": "part one"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text"}, {"type": "text", "text": None}, {"type": "mystery"}, "stray string"])),
    "tool-result-unknown-tool-id": _anthropic([{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": 7, "content": "x" * 100},
        {"type": "tool_result", "content": "no id"}]}]),
    "binary-looking-text": _anthropic([{"role": "user", "content": BINARY}], system=BINARY),
    "every-unicode-plane": _anthropic([{"role": "user", "content": UNICODE}],
                                      system=[{"type": "text", "text": UNICODE}]),
    "lone-surrogates": _anthropic([{"role": "user", "content": s} for s in SURROGATES]),
    "surrogates-in-tool-result": _anthropic(_tool_turn(" ".join(SURROGATES))),
    "weird-top-level-types": {"model": 7, "max_tokens": "16", "stream": "yes", "system": {"a": 1},
                              "messages": [{"role": "user", "content": "hi"}], "tools": "none"},
    "messages-not-a-list": {"model": "m", "max_tokens": 1, "messages": {"role": "user", "content": "x" * 5000}},
    "messages-of-scalars": {"model": "m", "max_tokens": 1, "messages": ["x" * 5000, 1, None, [], True]},
    "tool-use-input-not-object": _anthropic([
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": "ls"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}]),
    "deep-but-legal": _anthropic([{"role": "user", "content": "hi"}], metadata={"a": [[[[[[[[[[{}]]]]]]]]]]}),
}

OPENAI_ODD = {
    "assistant-content-null": {"model": "gpt-4o", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "not json {"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": None}]},
    "tool-content-parts": {"model": "gpt-4o", "messages": [
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "a"}, {"type": "odd"}, 5]}]},
    "tool-content-empty": {"model": "gpt-4o", "messages": [
        {"role": "tool", "tool_call_id": "c1", "content": ""}, {"role": "tool", "content": []}]},
    "image-and-audio-parts": {"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG, "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": PNG, "format": "wav"}},
        {"type": "file", "file": {"file_data": PDF, "filename": "a.pdf"}},
        {"type": "text", "text": UNICODE}]}]},
    "legacy-function-role": {"model": "gpt-4o", "messages": [
        {"role": "function", "name": "lookup", "content": BINARY}, {"role": "function", "content": "x"}]},
    "arguments-huge-and-odd": {"model": "gpt-4o", "messages": [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{" * 5000}},
            {"id": 5, "function": None}, "junk"]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"}]},
    "lone-surrogates": {"model": "gpt-4o", "messages": [{"role": "user", "content": s} for s in SURROGATES]},
    "developer-and-unknown-roles": {"model": "gpt-4o", "messages": [
        {"role": "developer", "content": UNICODE}, {"role": "robot", "content": "beep"}, {"content": "no role"}]},
}


@pytest.fixture(scope="module")
def plain(start_proxy):
    """Compression on, the response cache and rate limits off (bodies repeat across tests)."""
    return start_proxy("--no-cache", "--no-rate-limit")


def _send(proxy, path: str, headers: dict, raw: bytes, relayed: bool = False):
    """Post ``raw``; the answer must be the upstream's (``relayed``: whatever its status,
    the mock cannot always make sense of an odd body either), else a 200."""
    response = HTTP.post(f"{proxy.url}{path}", content=raw, headers=headers)
    assert "x-headroom-error" not in response.headers, response.text
    if not relayed:
        assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("name", list(ANTHROPIC_ODD))
@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["ascii", "utf8"])
def test_odd_anthropic_shapes_reach_the_upstream_byte_for_byte(plain, fresh_mock, name, ensure_ascii):
    raw = _dumps(ANTHROPIC_ODD[name], ensure_ascii=ensure_ascii)
    _send(plain, "/v1/messages", ANTHROPIC_HEADERS, raw, relayed=True)
    assert fresh_mock.last_body() == raw


@pytest.mark.parametrize("name", list(OPENAI_ODD))
def test_odd_openai_shapes_reach_the_upstream_byte_for_byte(plain, fresh_mock, name):
    raw = _dumps(OPENAI_ODD[name])
    _send(plain, "/v1/chat/completions", OPENAI_HEADERS, raw, relayed=True)
    assert fresh_mock.last_body() == raw


def test_odd_streaming_request_keeps_its_shape_apart_from_the_usage_option(plain, fresh_mock):
    """Streaming OpenAI requests get ``stream_options.include_usage`` added; nothing else moves."""
    body = {**OPENAI_ODD["lone-surrogates"], "stream": True}
    response = HTTP.post(f"{plain.url}/v1/chat/completions", content=_dumps(body), headers=OPENAI_HEADERS)
    assert response.status_code == 200 and response.content.endswith(b"data: [DONE]\n\n")
    sent = json.loads(fresh_mock.last_body())
    assert sent.pop("stream_options") == {"include_usage": True}
    assert sent == json.loads(_dumps(body))  # (an escaped surrogate pair reads back as one character)
    assert b'"usage":{' not in response.content  # the chunk Headroom asked for went back out


def test_several_megabytes_on_one_line_in_user_text_are_forwarded_unchanged(plain, fresh_mock):
    line = ("lorem ipsum " + UNICODE + " ") * 28_000  # ~3.4 MB of UTF-8, no newline
    raw = _dumps(_anthropic([{"role": "user", "content": line}]), ensure_ascii=False)
    assert len(raw) > 3_000_000 and b"\\n" not in raw
    _send(plain, "/v1/messages", ANTHROPIC_HEADERS, raw)
    assert fresh_mock.last_body() == raw


def test_several_megabytes_on_one_line_of_plain_tool_output_never_crash(plain, fresh_mock):
    line = "".join(f"word{i} " for i in range(300_000))  # ~3 MB of prose on one line: nothing to cut
    raw = _dumps(_anthropic(_tool_turn(line)))
    response = _send(plain, "/v1/messages", ANTHROPIC_HEADERS, raw)
    assert fresh_mock.last_body() == raw
    assert response.headers["x-headroom-tokens-saved"] == "0"


# --- where compression applies: every needle survives ------------------------------------

NEEDLE = "NEEDLE-7f3a"
ODD_VALUE = f"{NEEDLE} {UNICODE} {BINARY} \ud800 \udfff"


def _question_turn(content, question: str = f"what does {NEEDLE} say?", tool: str = "Bash") -> list:
    turn = _tool_turn(content, tool=tool)
    turn[0]["content"] = question
    return turn + [{"role": "assistant", "content": "looking"}, {"role": "user", "content": question}]


def _outside_tool_outputs(body: dict) -> dict:
    """The body with every tool_result's content blanked: what must never change."""
    out = json.loads(json.dumps(body))
    for msg in out["messages"]:
        if isinstance(msg.get("content"), list):
            for block in msg["content"]:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    block["content"] = None
    return out


def _tool_output_text(body: dict) -> str:
    for msg in body["messages"]:
        if isinstance(msg.get("content"), list):
            for block in msg["content"]:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    content = block["content"]
                    if isinstance(content, str):
                        return content
                    return "\n".join(p.get("text", "") for p in content if p.get("type") == "text")
    raise AssertionError("no tool output")


def _compressed(plain, fresh_mock, body: dict, ensure_ascii: bool = True) -> tuple[dict, object]:
    raw = _dumps(body, ensure_ascii=ensure_ascii)
    response = _send(plain, "/v1/messages", ANTHROPIC_HEADERS, raw)
    received = fresh_mock.last_body()
    received.decode("utf-8")  # whatever Headroom rewrote is still UTF-8
    sent = json.loads(received)
    assert int(response.headers["x-headroom-tokens-saved"]) > 0, response.headers
    assert _outside_tool_outputs(sent) == _outside_tool_outputs(body)
    return sent, response


def test_one_line_multi_megabyte_json_keeps_the_needle_with_its_odd_characters(plain, fresh_mock):
    items = [{"id": i, "status": "ok", "note": f"item {i} {UNICODE}"} for i in range(12_000)]
    items[7_777] = {"id": 7_777, "status": "ok", "note": ODD_VALUE}
    text = json.dumps(items)  # one line, ~3 MB, lone surrogates as escapes
    assert "\n" not in text and len(text) > 2_000_000
    sent, response = _compressed(plain, fresh_mock, _anthropic(_question_turn(text)))
    output = _tool_output_text(sent)
    assert "json:lossy" in response.headers["x-headroom-transforms"]
    assert "[headroom:" in output
    # The kept row still says exactly what the tool said, odd characters and all.
    row = next(line for line in output.split("\n") if NEEDLE in line)
    row_id, status, note = row.split(",", 2)
    assert (row_id, status, json.loads(note)) == ("7777", "ok", ODD_VALUE)


def test_logs_with_binary_looking_lines_keep_the_error_and_the_question_line(plain, fresh_mock):
    # A log is lines: no LF or CR inside a line (a CR is a terminal redraw, resolved as one).
    binary = BINARY.replace("\n", "").replace("\r", "")
    noise = [f"2024-05-01T10:00:{i % 60:02d} INFO tick {i} {UNICODE}" for i in range(3_000)]
    noise[1_200] = f"2024-05-01T10:20:00 ERROR disk {binary} {UNICODE} failure"
    noise[2_222] = f"2024-05-01T10:37:02 INFO {ODD_VALUE.replace(BINARY, binary)}"
    sent, response = _compressed(plain, fresh_mock, _anthropic(_question_turn("\n".join(noise))))
    output = _tool_output_text(sent).split("\n")
    assert "log:lossy" in response.headers["x-headroom-transforms"]
    assert noise[1_200] in output and noise[2_222] in output  # exactly as the tool wrote them


def test_prose_with_invisible_and_astral_characters_keeps_every_word(plain, fresh_mock):
    words = [f"w{i}{chr(0x10000 + i)}" for i in range(2_000)]
    text = "  ".join(words) + "\n\n\n\n" + f"{NEEDLE} {UNICODE}"
    sent, _ = _compressed(plain, fresh_mock, _anthropic(_question_turn(text, tool="WebFetch")))
    output = _tool_output_text(sent)
    assert output.split() == text.replace("\ufeff", "").split()  # whitespace only; the BOM is invisible


def test_tool_result_list_of_blocks_compresses_its_text_and_keeps_its_image(plain, fresh_mock):
    items = [{"id": i, "name": f"n{i}", "ok": True} for i in range(60)]
    content = [{"type": "text", "text": json.dumps(items, indent=2)},
               {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
               {"type": "mystery", "x": 1}]
    body = _anthropic(_question_turn(content))
    sent, _ = _compressed(plain, fresh_mock, body)
    blocks = sent["messages"][2]["content"][0]["content"]
    assert blocks[1:] == content[1:]
    from headroom.transforms.json_decode import decode

    assert decode(blocks[0]["text"]) == items  # lossless: every value back


@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["ascii", "utf8"])
def test_lone_surrogate_in_user_text_survives_a_rewritten_body(plain, fresh_mock, ensure_ascii):
    """The body is re-serialised (a tool output was compressed): the user's lone surrogate
    must come out as the same escape, in valid UTF-8."""
    items = [{"id": i, "status": "ok"} for i in range(400)]
    body = _anthropic(_question_turn(json.dumps(items, indent=2)))
    body["messages"][0]["content"] = "caf\u00e9 \U0001f680 \ud800 \udfff x\ud83d"  # (the mock echoes only the last)
    sent, _ = _compressed(plain, fresh_mock, body, ensure_ascii=ensure_ascii)
    assert sent["messages"][0]["content"] == "caf\u00e9 \U0001f680 \ud800 \udfff x\ud83d"


def test_openai_tool_message_parts_compress_and_keep_the_needle(plain, fresh_mock):
    rows = "\n".join(f"src/mod{i}/file{i}.py:{i}:    value = compute({i})  # {UNICODE}" for i in range(1_500))
    # One line (no LF or CR), and no lone surrogates: the mock cannot digest them in list
    # content (its receipt header); they are covered above.
    odd = f"{NEEDLE} {UNICODE} {BINARY.replace(chr(10), '').replace(chr(13), '')} end"
    rows += f"\nsrc/special.py:77:    {odd}"
    body = {"model": "gpt-4o", "messages": [
        {"role": "user", "content": f"where is {NEEDLE}?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "grep", "arguments": '{"pattern": "x"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": rows}, {"type": "odd"}]},
        {"role": "user", "content": f"so where is {NEEDLE}?"}]}  # (the mock cannot echo a lone surrogate)
    response = _send(plain, "/v1/chat/completions", OPENAI_HEADERS, _dumps(body))
    sent = json.loads(fresh_mock.last_body())
    assert int(response.headers["x-headroom-tokens-saved"]) > 0
    parts = sent["messages"][2]["content"]
    assert parts[1] == {"type": "odd"}
    assert " 77: " + odd in parts[0]["text"].split("\n")  # grouped under its path, the match itself exact
    assert sent["messages"][:2] == body["messages"][:2] and sent["messages"][3] == body["messages"][3]


def test_odd_bodies_with_the_response_cache_on(start_proxy, fresh_mock):
    """The cache key is computed from the parsed body: lone surrogates must not break it."""
    cached = start_proxy("--no-rate-limit")
    for body in (ANTHROPIC_ODD["lone-surrogates"], ANTHROPIC_ODD["every-unicode-plane"],
                 ANTHROPIC_ODD["binary-looking-text"]):
        raw = _dumps(body)
        answers = []

        def hit(raw: bytes = raw, answers: list = answers):  # the answer is stored just after it has gone out
            again = HTTP.post(f"{cached.url}/v1/messages", content=raw, headers=ANTHROPIC_HEADERS)
            assert again.status_code == 200, again.text
            if again.headers["x-headroom-cache"] == "hit":
                return again
            answers.append(again.content)
            return None

        again = wait_for(hit, interval=0.1, what="a cache hit")
        assert again.content in answers
