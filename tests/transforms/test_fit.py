"""Context-window fitting: only when over the window, whole turns, oldest first, pairs intact."""

from __future__ import annotations

import itertools

from headroom.formats import CHAT, RESPONSES
from headroom.state.memory_store import MemoryStore
from headroom.transforms import PipelineOptions, run_pipeline
from headroom.transforms.fit import input_budget, model_limits
from headroom.transforms.pipeline import needs_work


def test_models_table_lookup():
    assert model_limits("claude-sonnet-4-5-20250929", "anthropic").context == 200_000
    assert model_limits("claude-some-future-model", "anthropic").context == 200_000
    assert model_limits("gpt-4o-mini-2024-07-18", "openai").context == 128_000
    assert model_limits("gpt-4.1-2025-04-14", "openai").context == 1_047_576
    assert model_limits("gpt-4-0613", "openai").context == 8_192
    gpt5 = model_limits("gpt-5-mini", "openai")
    assert gpt5.max_input == 272_000
    assert model_limits("unknown", "openai").context == 128_000
    assert model_limits(None, "anthropic").context == 200_000
    body = {"model": "gpt-5", "max_completion_tokens": 10_000}
    assert input_budget(body, "openai", 1.0) == 272_000


def _agent_body(turns: int, max_tokens: int, words: int = 300) -> dict:
    """A long tool-using conversation in Anthropic's format."""
    messages = [{"role": "user", "content": [{"type": "text", "text": "Fix the failing build."}]}]
    for t in range(turns):
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": f"step {t}"},
            {"type": "tool_use", "id": f"toolu_{t}", "name": "Bash", "input": {"command": f"make step{t}"}}]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{t}", "content": f"output {t} " + "lorem ipsum " * words}]})
    messages.append({"role": "assistant", "content": [{"type": "text", "text": "Done?"}]})
    messages.append({"role": "user", "content": [{"type": "text", "text": "Yes, now commit."}]})
    return {"model": "claude-sonnet-4-5", "max_tokens": max_tokens, "system": "You are a coding agent.",
            "messages": messages}


def _check_pairs_and_roles(messages: list) -> None:
    issued, answered = set(), set()
    for m in messages:
        for block in m["content"] if isinstance(m["content"], list) else ():
            if block["type"] == "tool_use":
                issued.add(block["id"])
            if block["type"] == "tool_result":
                assert block["tool_use_id"] in issued  # its call is still there, before it
                answered.add(block["tool_use_id"])
    assert issued == answered
    roles = [m["role"] for m in messages]
    assert roles[0] == "user" and all(a != b for a, b in itertools.pairwise(roles))


async def test_fits_by_dropping_oldest_whole_turns():
    body = _agent_body(turns=40, max_tokens=190_000)  # leaves 10k tokens of window (9k after margin)
    opts = PipelineOptions(min_block_chars=10**9)  # isolate fitting from compression
    new, receipt = await run_pipeline(body, "anthropic", MemoryStore(), "c", opts)
    assert new is not None and receipt.dropped_turns > 0
    assert f"fit:drop_turns={receipt.dropped_turns}" in receipt.transforms
    assert receipt.tokens_after <= input_budget(body, "anthropic", opts.fit_margin) < receipt.tokens_before
    kept = new["messages"]
    assert kept[0] == body["messages"][0]  # the task survives
    assert kept[-4:] == body["messages"][-4:]  # the last turns survive
    assert new["system"] == body["system"]
    _check_pairs_and_roles(kept)
    # what was dropped is the oldest: the kept tool calls are a suffix of all tool calls
    ids = [b["id"] for m in kept[1:] for b in m["content"] if b["type"] == "tool_use"]
    assert ids == [f"toolu_{t}" for t in range(40 - len(ids), 40)]
    assert len(body["messages"]) - len(kept) == 2 * receipt.dropped_turns


async def test_no_fitting_below_the_window():
    body = _agent_body(turns=5, max_tokens=1000)
    new, receipt = await run_pipeline(body, "anthropic", MemoryStore(), "c", PipelineOptions(min_block_chars=10**9))
    assert new is None and receipt.dropped_turns == 0


async def _cut_points(step_share: float) -> list[str]:
    """The first kept tool call, turn after turn, as a conversation grows past the window."""
    opts = PipelineOptions(min_block_chars=10**9, fit_step_share=step_share)
    cuts = []
    for turns in range(30, 100):
        body = _agent_body(turns=turns, max_tokens=190_000, words=100)
        new, _ = await run_pipeline(body, "anthropic", MemoryStore(), "c", opts)
        if new is not None:
            _check_pairs_and_roles(new["messages"])
            cuts.append(next(b["id"] for b in new["messages"][1]["content"] if b["type"] == "tool_use"))
    return cuts


async def test_the_cut_point_moves_in_steps_not_every_turn():
    """Cache-friendliness: each move of the cut rewrites the cached prefix, so it should move
    in steps (default: 10% of the budget) rather than on every turn."""
    stepped = await _cut_points(PipelineOptions().fit_step_share)
    every_turn = await _cut_points(0.0)
    assert len(stepped) == len(every_turn) > 40
    assert len(set(every_turn)) > 0.8 * len(every_turn)
    assert len(set(stepped)) < len(set(every_turn)) / 2


def test_units_keep_tool_calls_with_their_results_openai():
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "task"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f"}}]},
        {"role": "tool", "tool_call_id": "a", "content": "ra"},
        {"role": "system", "content": "mid-conversation instruction"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "b", "type": "function", "function": {"name": "f"}}]},
        # a result answered only after the next assistant message: the units must merge
        {"role": "assistant", "content": "thinking aloud"},
        {"role": "tool", "tool_call_id": "b", "content": "rb"},
        {"role": "user", "content": "next"},
    ]
    groups = CHAT.units(messages)
    assert groups == [[2, 3], [5, 6, 7, 8]]
    assert all(messages[i]["role"] != "system" for g in groups for i in g)


async def test_openai_system_messages_are_never_dropped():
    messages = [{"role": "system", "content": "rules"}, {"role": "user", "content": "task"}]
    for t in range(30):
        messages += [
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": f"c{t}", "type": "function", "function": {"name": "run", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": f"c{t}", "content": "data " * 400},
        ]
    messages.append({"role": "user", "content": "and now?"})
    body = {"model": "gpt-4", "messages": messages}  # 8k window
    new, receipt = await run_pipeline(body, "openai", MemoryStore(), "c", PipelineOptions(min_block_chars=10**9))
    kept = new["messages"]
    assert kept[:2] == messages[:2] and kept[-1] == messages[-1] and receipt.dropped_turns > 0
    calls = {c["id"] for m in kept if m.get("tool_calls") for c in m["tool_calls"]}
    results = {m["tool_call_id"] for m in kept if m["role"] == "tool"}
    assert calls == results


def _codex_body(turns: int, **extra) -> dict:
    """A long Codex-like Responses conversation: developer prompt, task, then per turn a
    reasoning item, a function call and its output."""
    items = [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules " * 200}]},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix the build."}]}]
    for t in range(turns):
        items += [
            {"type": "reasoning", "id": f"rs_{t}", "summary": [], "encrypted_content": f"enc{t}"},
            {"type": "function_call", "id": f"fc_{t}", "call_id": f"call_{t}", "name": "exec_command",
             "arguments": f'{{"cmd": "make step{t}"}}'},
            {"type": "function_call_output", "call_id": f"call_{t}", "output": f"step {t}: " + "lorem ipsum " * 300},
        ]
    items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done?"}]})
    items.append({"role": "user", "content": "Yes, now commit."})
    return {"model": "gpt-4o", "max_output_tokens": 118_000, "input": items, "prompt_cache_key": "k", **extra}


def test_units_of_responses_items_keep_each_response_whole():
    body = _codex_body(turns=3)
    groups = RESPONSES.units(body["input"])
    # reasoning + its call + the call's output; the last unit runs to the end
    assert groups == [[2, 3, 4], [5, 6, 7], [8, 9, 10], [11, 12]]


async def test_responses_bodies_fit_by_dropping_oldest_whole_turns():
    body = _codex_body(turns=40)  # 128k window, 118k for output: about 9k tokens of input
    opts = PipelineOptions(min_block_chars=10**9)  # isolate fitting from compression
    new, receipt = await run_pipeline(body, "responses", MemoryStore(), "c", opts)
    assert new is not None and receipt.dropped_turns > 0
    assert f"fit:drop_turns={receipt.dropped_turns}" in receipt.transforms
    assert receipt.tokens_after <= input_budget(body, "openai", opts.fit_margin) < receipt.tokens_before
    kept = new["input"]
    assert kept[:2] == body["input"][:2]  # the developer prompt and the task
    assert kept[-5:] == body["input"][-5:]  # the newest turns
    assert len(body["input"]) - len(kept) == 3 * receipt.dropped_turns
    calls = [i["call_id"] for i in kept if i.get("type") == "function_call"]
    outputs = [i["call_id"] for i in kept if i.get("type") == "function_call_output"]
    reasoning = [i["id"] for i in kept if i.get("type") == "reasoning"]
    assert calls == outputs == [f"call_{t}" for t in range(40 - len(calls), 40)]  # the oldest went
    assert reasoning == [c.replace("call_", "rs_") for c in calls]  # each call keeps its reasoning
    assert {k: v for k, v in new.items() if k != "input"} == {k: v for k, v in body.items() if k != "input"}


async def test_responses_bodies_that_continue_a_stored_response_are_not_fitted():
    body = _codex_body(turns=40, previous_response_id="resp_123")
    new, receipt = await run_pipeline(body, "responses", MemoryStore(), "c", PipelineOptions(min_block_chars=10**9))
    assert new is None and receipt.dropped_turns == 0
    assert not needs_work(body, "responses", PipelineOptions(min_block_chars=10**9))
    assert needs_work(_codex_body(turns=40), "responses", PipelineOptions(min_block_chars=10**9))
    assert not needs_work(_codex_body(turns=2), "responses", PipelineOptions(min_block_chars=10**9))
