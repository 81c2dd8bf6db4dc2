"""The Responses API body view: where tool output sits, and what a rewrite may touch."""

from __future__ import annotations

import asyncio

from headroom.proxy.usage import StreamUsage, usage_from_body
from headroom.state.memory_store import MemoryStore
from headroom.transforms import needs_work, run_pipeline
from headroom.transforms.blocks import find_blocks, question_text, replace_blocks
from testkit.corpus.cases import orders_api


def body(output) -> dict:
    return {"model": "gpt-4.1", "instructions": "Be brief.", "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
        {"role": "user", "content": "Why did it fail?"},
        {"type": "function_call", "call_id": "c1", "name": "shell",
         "arguments": '{"command": ["bash", "-lc", "curl -s api/orders"]}'},
        {"type": "function_call_output", "call_id": "c1", "output": output},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "<system-reminder>r</system-reminder>"},
            {"type": "input_text", "text": "And now?"}]},
    ]}


def test_blocks_are_function_call_outputs_with_their_call():
    blocks = find_blocks(body("x" * 20), "responses")
    assert [(b.path, b.tool_name, b.tool_input) for b in blocks] == [
        ((3, None, None), "shell", {"command": ["bash", "-lc", "curl -s api/orders"]})]
    parts = [{"type": "input_image", "image_url": "data:"}, {"type": "input_text", "text": "y" * 20}]
    assert [b.path for b in find_blocks(body(parts), "responses")] == [(3, 1, None)]
    assert find_blocks({"input": "just text"}, "responses") == []
    assert question_text(body("x"), "responses") == "And now?"
    assert question_text({"input": "plain"}, "responses") == "plain"


def test_replace_shares_everything_else():
    original = body([{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}])
    new = replace_blocks(original, "responses", {(3, 1, None): "B"})
    assert new["input"][3]["output"] == [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "B"}]
    assert original["input"][3]["output"][1]["text"] == "b"  # never mutated
    assert all(new["input"][i] is original["input"][i] for i in (0, 1, 2, 4))
    assert new["instructions"] is original["instructions"]


def test_pipeline_compresses_outputs_only():
    case = orders_api()
    original = body(case.content)
    assert needs_work(original, "responses") and not needs_work(body("small"), "responses")
    new, receipt = asyncio.run(run_pipeline(original, "responses", MemoryStore(), "caller"))
    assert new is not None and receipt.tokens_saved > 0 and receipt.blocks == 1
    assert len(new["input"][3]["output"]) < len(case.content)
    assert new["input"][:3] == original["input"][:3] and new["input"][4] is original["input"][4]


def test_usage_from_body_and_completed_event():
    usage = {"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 800}, "output_tokens": 50,
             "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 1050}
    found = usage_from_body("openai", b'{"object":"response","usage":' + str(usage).replace("'", '"').encode() + b"}")
    assert (found.input_tokens, found.cache_read_tokens, found.output_tokens) == (200, 800, 50)
    meter = StreamUsage("openai")
    created = b'event: response.created\ndata: {"type":"response.created","response":{"usage":null}}\n\n'
    completed = (b'event: response.completed\ndata: {"type":"response.completed","response":{"usage":'
                 + str(usage).replace("'", '"').encode() + b"}}\n\n")
    assert meter.feed(created + completed) == created + completed  # nothing is stripped
    assert (meter.usage.input_tokens, meter.usage.cache_read_tokens, meter.usage.output_tokens) == (200, 800, 50)


def test_codex_shell_argv_cat_is_a_file_read():
    from headroom.transforms.detect import tool_hint

    assert tool_hint("shell", {"command": ["bash", "-lc", "cat src/app.py"]}) == "file"
    assert tool_hint("shell", {"command": ["sed", "-n", "1,80p", "app.py"]}) == "file"
    assert tool_hint("shell", {"command": ["bash", "-lc", "pytest -q | tail"]}) == "shell"
    assert tool_hint("shell", {"command": "cat a.py"}) == "file"


def test_replace_two_parts_of_one_output():
    original = body([{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}])
    new = replace_blocks(original, "responses", {(3, 0, None): "A", (3, 1, None): "B"})
    assert [p["text"] for p in new["input"][3]["output"]] == ["A", "B"]
    assert [p["text"] for p in original["input"][3]["output"]] == ["a", "b"]
    assert new["input"][3]["call_id"] == "c1"
