"""run_pipeline and needs_work: what may change, what never changes, and what is remembered."""

from __future__ import annotations

import copy
import json

import pytest

from headroom.state.memory_store import MemoryStore
from headroom.state.tool_use import ToolUse
from headroom.transforms import (
    PipelineOptions,
    Receipt,
    ccr,
    needs_work,
    retrieve,
    router,
    run_pipeline,
    tokens,
)
from headroom.transforms.tokens import count_tokens

OPTS = PipelineOptions()


def orders(n: int = 300, failing: int = 150) -> str:
    rows = [{"id": f"ord_{i:05d}", "status": "paid", "amount": 1000 + i, "note": "ünïcødé ✓"} for i in range(n)]
    rows[failing]["status"] = "payment_failed"
    return json.dumps(rows, indent=2)


def builds(n: int = 400) -> str:
    lines = [f"step {i}: compiled src/module_{i}.c" for i in range(n)]
    lines[n // 2] = "src/module_200.c:14: error: expected ';' before '}' token"
    return "\n".join(lines)


def anthropic(turns: list[tuple[str, str, str]], question: str) -> dict:
    """A Claude Code style body: each turn is (tool name, call id, tool output)."""
    messages = [{"role": "user", "content": [{"type": "text", "text": question}]}]
    for name, call_id, output in turns:
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": call_id, "name": name, "input": {"command": "x"}}]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call_id, "content": output, "is_error": False}]})
    messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return {
        "model": "claude-sonnet-4-5", "max_tokens": 8000,
        "system": [{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "Bash", "description": "Run a command", "input_schema": {"type": "object"}}],
        "messages": messages,
    }


def result_text(body: dict, index: int) -> str:
    return body["messages"][index]["content"][0]["content"]


# --- needs_work ---------------------------------------------------------------------------


def test_needs_work_only_for_big_tool_output():
    small = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}
    assert not needs_work(small, "anthropic", OPTS)
    assert needs_work(anthropic([("Bash", "t1", orders())], "q"), "anthropic", OPTS)
    pasted = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": orders()}]}
    assert not needs_work(pasted, "anthropic", OPTS)  # user text is never rewritten
    failed = anthropic([("Bash", "t1", orders())], "q")
    failed["messages"][2]["content"][0]["is_error"] = True
    assert not needs_work(failed, "anthropic", OPTS)
    oa = {"model": "gpt-4o", "messages": [{"role": "tool", "tool_call_id": "c", "content": orders()}]}
    assert needs_work(oa, "openai", OPTS)
    assert not needs_work({"messages": "nope"}, "openai", OPTS)
    weird = {"messages": [{"role": "user", "content": [
        {"type": "tool_result", "content": [{"type": "text", "text": 5}] * 2000}]}], "tools": [{"description": 7}]}
    assert needs_work(weird, "anthropic", OPTS) is False  # never raises


def test_needs_work_when_the_window_may_overflow():
    huge = {"model": "gpt-4", "messages": [{"role": "user", "content": "word " * 20_000}]}
    assert needs_work(huge, "openai", OPTS)
    assert not needs_work(huge, "openai", PipelineOptions(fit_context=False))


# --- what changes and what never does -------------------------------------------------------


async def test_nothing_to_do_returns_none(store):
    body = anthropic([("Bash", "t1", "short output")], "what?")
    new, receipt = await run_pipeline(body, "anthropic", store, "c", OPTS)
    assert new is None
    assert receipt.tokens_before == receipt.tokens_after > 0 and receipt.transforms == []


async def test_only_tool_output_changes_and_input_is_not_mutated(store):
    body = anthropic([("Bash", "t1", orders()), ("Bash", "t2", builds())], "Why did ord_00150 fail?")
    body["messages"][0]["content"].append({"type": "text", "text": orders(), "cache_control": {"type": "ephemeral"}})
    snapshot = copy.deepcopy(body)
    new, receipt = await run_pipeline(body, "anthropic", store, "c", OPTS)
    assert body == snapshot
    assert new is not None and new is not body
    assert new["system"] == body["system"] and new["tools"] == body["tools"]
    assert new["messages"][0] == body["messages"][0]  # user text, even pasted JSON, untouched
    assert len(new["messages"]) == len(body["messages"])
    for old, fresh in zip(body["messages"], new["messages"]):
        assert old["role"] == fresh["role"]
        for a, b in zip(old["content"], fresh["content"]):
            assert a.keys() == b.keys() and list(a) == list(b)  # cache_control stays put, key order too
            assert {k: v for k, v in a.items() if k != "content"} == {k: v for k, v in b.items() if k != "content"}
    out = result_text(new, 2)
    assert "payment_failed" in out and "ord_00150" in out and "ünïcødé ✓" in out
    assert "expected ';' before '}' token" in result_text(new, 4)
    assert receipt.tokens_before > receipt.tokens_after > 0
    assert receipt.tokens_saved == receipt.tokens_before - receipt.tokens_after
    assert receipt.transforms[:2] == ["json:table", "json:lossy"] and "log:lossy" in receipt.transforms
    assert receipt.errors == 0 and receipt.dropped_turns == 0 and receipt.estimated is tokens.is_estimate()
    assert len(receipt.ccr_keys) == 2 and receipt.blocks == 2


async def test_tool_result_parts_and_images(store):
    body = anthropic([("Bash", "t1", "placeholder")], "q")
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}
    body["messages"][2]["content"][0]["content"] = [{"type": "text", "text": orders()}, image]
    new, _ = await run_pipeline(body, "anthropic", store, "c", OPTS)
    parts = new["messages"][2]["content"][0]["content"]
    assert parts[1] == image and parts[0]["type"] == "text" and len(parts[0]["text"]) < len(orders()) / 3


async def test_openai_tool_names_come_from_tool_calls(store):
    content = json.dumps({"rows": json.loads(orders())}, indent=2)

    def body(fn: str) -> dict:
        return {"model": "gpt-4.1", "messages": [
            {"role": "system", "content": "You help."},
            {"role": "user", "content": [{"type": "text", "text": "Which order failed?"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": fn, "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": content}]}

    new, receipt = await run_pipeline(body("list_orders"), "openai", store, "c", OPTS)
    assert "payment_failed" in new["messages"][3]["content"] and len(new["messages"][3]["content"]) < len(content) / 3
    assert new["messages"][:3] == body("list_orders")["messages"][:3]
    unchanged, receipt = await run_pipeline(body("read_file"), "openai", store, "c", OPTS)
    assert unchanged is None and receipt.transforms == []  # a file read is sent exactly


# --- cache safety: first sight decides, later turns repeat it byte for byte --------------------


async def test_later_turns_resend_earlier_blocks_byte_for_byte(store):
    first_body = anthropic([("Bash", "t1", orders())], "Why did ord_00150 fail?")
    first, _ = await run_pipeline(first_body, "anthropic", store, "c", OPTS)
    sent = result_text(first, 2)

    # Next turn: a new question that would select other rows, and a new tool result.
    question = "What is the amount of ord_00222?"
    later_body = anthropic([("Bash", "t1", orders()), ("Bash", "t2", builds())], question)
    later, receipt = await run_pipeline(later_body, "anthropic", store, "c", OPTS)
    assert result_text(later, 2) == sent
    assert receipt.memo_hits == 1 and receipt.blocks == 2

    # Without the memo the same block would have been compressed differently:
    fresh, _ = await run_pipeline(later_body, "anthropic", MemoryStore(), "c", OPTS)
    assert result_text(fresh, 2) != sent and "ord_00222" in result_text(fresh, 2)


async def test_a_block_whose_memo_entry_is_gone_is_recompressed_to_the_same_bytes(store):
    """The sent record outlives a lost memo entry: the block is compressed again with the terms
    of the turn that first sent it, not this turn's, so the prefix does not change."""
    first, _ = await run_pipeline(anthropic([("Bash", "t1", orders())], "Why did ord_00150 fail?"),
                                  "anthropic", store, "c", OPTS)
    sent = result_text(first, 2)
    memo_keys = [key for key in list(store._data) if key.startswith("hr:memo:")]
    assert memo_keys and any(key.startswith("hr:sent:") for key in store._data)
    for key in memo_keys:
        await store.delete(key)  # evicted or expired

    later_body = anthropic([("Bash", "t1", orders())], "What is the amount of ord_00222?")
    later, receipt = await run_pipeline(later_body, "anthropic", store, "c", OPTS)
    assert result_text(later, 2) == sent and receipt.prefix_changes == []
    # Without the record, this turn's question would have picked other rows:
    fresh, _ = await run_pipeline(later_body, "anthropic", MemoryStore(), "c", OPTS)
    assert result_text(fresh, 2) != sent


async def test_one_round_trip_each_way_per_request(store):
    body = anthropic([("Bash", "t1", orders()), ("Bash", "t2", builds())], "q")
    await run_pipeline(body, "anthropic", store, "c", OPTS)
    assert store.calls == ["get_many", "set_many:86400"]
    store.calls.clear()
    await run_pipeline(body, "anthropic", store, "c", OPTS)
    assert store.calls == ["get_many"]  # everything memoised: nothing to write


async def test_memo_and_ccr_are_partitioned_by_caller(store):
    body = anthropic([("Bash", "t1", orders())], "Why did ord_00150 fail?")
    _, receipt = await run_pipeline(body, "anthropic", store, "alice", OPTS)
    (key,) = receipt.ccr_keys
    assert await retrieve(store, "alice", key) == orders()
    assert await retrieve(store, "bob", key) is None
    assert await retrieve(store, "alice", "../../etc") is None
    _, bob = await run_pipeline(body, "anthropic", store, "bob", OPTS)
    assert bob.memo_hits == 0


async def test_ccr_originals_expire_after_their_ttl():
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    opts = PipelineOptions(ccr_ttl=60, memo_ttl=3600)
    _, receipt = await run_pipeline(anthropic([("Bash", "t1", orders())], "q"), "anthropic", store, "c", opts)
    (key,) = receipt.ccr_keys
    now[0] += 59
    assert await retrieve(store, "c", key) == orders()
    now[0] += 2
    assert await retrieve(store, "c", key) is None


# --- failure is safe ------------------------------------------------------------------------


async def test_a_failing_transform_leaves_its_block_as_sent(store, monkeypatch, caplog):
    real = router.json_compressor.compress

    def boom(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(router.json_compressor, "compress", boom)
    body = anthropic([("Bash", "t1", orders())], "q")
    new, receipt = await run_pipeline(body, "anthropic", store, "c", OPTS)
    assert new is None and receipt.errors == 1
    assert any("transform failed" in r.message for r in caplog.records)

    # Fixed on the next turn: the block stays as it was first sent; the new block compresses.
    monkeypatch.setattr(router.json_compressor, "compress", real)
    body = anthropic([("Bash", "t1", orders()), ("Bash", "t2", builds())], "q")
    new, receipt = await run_pipeline(body, "anthropic", store, "c", OPTS)
    assert result_text(new, 2) == orders() and result_text(new, 4) != builds()
    assert receipt.errors == 0


async def test_store_outage_means_the_original_request():
    class Down(MemoryStore):
        async def get_many(self, keys):
            raise ConnectionError("redis down")

    new, receipt = await run_pipeline(anthropic([("Bash", "t1", orders())], "q"), "anthropic", Down(), "c", OPTS)
    assert new is None and receipt == Receipt(errors=1, estimated=receipt.estimated)


async def test_bad_bodies_never_raise(store):
    for body in ({"messages": None}, {"messages": [None, 3, {"role": "user", "content": [None]}]}, []):
        new, _receipt = await run_pipeline(body, "anthropic", store, "c", OPTS)
        assert new is None


async def test_estimated_counts_are_labelled(store):
    body = anthropic([("Bash", "t1", orders())], "q")
    _, receipt = await run_pipeline(body, "anthropic", store, "c", PipelineOptions(exact_tokens=False))
    assert receipt.estimated is True


async def test_receipt_counts_match_the_bodies(store):
    body = anthropic([("Bash", "t1", orders())], "Why did ord_00150 fail?")
    new, receipt = await run_pipeline(body, "anthropic", store, "c", OPTS)
    saved = count_tokens(orders()) - count_tokens(result_text(new, 2))
    assert receipt.tokens_saved == saved


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_identical_blocks_in_one_request_compress_once(store, provider):
    if provider == "anthropic":
        body = anthropic([("Bash", "t1", orders()), ("Bash", "t2", orders())], "q")
    else:
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "q"}] + [
            {"role": "tool", "tool_call_id": f"c{i}", "content": orders()} for i in range(2)]}
    new, _receipt = await run_pipeline(body, provider, store, "c", OPTS)
    texts = [m["content"][0]["content"] if provider == "anthropic" else m["content"]
             for m in new["messages"] if m["role"] in ("tool",) or (provider == "anthropic" and m["role"] == "user"
                                                                   and m["content"][0]["type"] == "tool_result")]
    assert len(texts) == 2 and texts[0] == texts[1] != orders()


async def test_shell_commands_that_print_a_file_count_as_file_reads(store):
    """An agent may edit a file it saw through ``cat``: it must have seen the exact bytes."""

    def body(command: str) -> dict:
        b = anthropic([("Bash", "t1", orders())], "q")
        b["messages"][1]["content"][1]["input"] = {"command": command}
        return b

    for command in ("cat data/orders.json", "cd app && sed -n 1,400p fixtures/orders.json", "head -c 90000 o.json"):
        new, receipt = await run_pipeline(body(command), "anthropic", store, "c", OPTS)
        assert new is None and receipt.transforms == [], command
    for command in ("cat data/orders.json | jq .", "curl -s https://api/orders", "cat a.json > b.json"):
        new, _ = await run_pipeline(body(command), "anthropic", store, "c", OPTS)
        assert new is not None and len(result_text(new, 2)) < len(orders()) / 3, command


# --- the retrieval policy -----------------------------------------------------------------


async def _back_off(store, caller: str, tool: str) -> None:
    rule = OPTS.backoff
    started = await store.count_tool_use(caller, {tool: ToolUse(lossy=rule.min_compressions,
                                                                retrieved=rule.min_compressions)}, rule)
    assert started == [tool]


async def test_a_backed_off_tool_gets_lossless_transforms_only_and_others_do_not(store):
    await _back_off(store, "c", "Bash")
    body = anthropic([("Bash", "t1", orders()), ("Grep", "t2", orders(failing=151))], "Why did ord_00150 fail?")
    out, receipt = await run_pipeline(body, "anthropic", store, "c", OPTS)
    bash, grep = result_text(out, 2), result_text(out, 4)
    assert "[headroom:" not in bash and all(f"ord_{i:05d}" in bash for i in range(300))  # everything, re-encoded
    assert len(bash) < len(orders()) and ccr.marker_keys(grep)  # lossless still saves; Grep is still cut
    assert receipt.backed_off == ["Bash"] and "policy:lossless" in receipt.transforms
    other, theirs = await run_pipeline(body, "anthropic", store, "d", OPTS)  # another caller: cut as ever
    assert ccr.marker_keys(result_text(other, 2)) and theirs.backed_off == []


async def test_a_block_sent_before_a_back_off_keeps_its_bytes_even_when_its_memo_entry_is_gone(store):
    body = anthropic([("Bash", "t1", orders())], "Why did ord_00150 fail?")
    first, _ = await run_pipeline(body, "anthropic", store, "c", OPTS)
    sent = result_text(first, 2)
    assert ccr.marker_keys(sent)
    await _back_off(store, "c", "Bash")
    for key in [key for key in list(store._data) if key.startswith("hr:memo:")]:
        await store.delete(key)  # evicted: the block is compressed again, in the mode it was sent in
    later, receipt = await run_pipeline(body, "anthropic", store, "c", OPTS)
    assert result_text(later, 2) == sent and receipt.prefix_changes == [] and receipt.backed_off == []


async def test_originals_name_their_tool_and_lossy_compressions_are_counted(store):
    body = anthropic([("Bash", "t1", orders()), ("Bash", "t2", builds())], "Why did ord_00150 fail?")
    _, receipt = await run_pipeline(body, "anthropic", store, "c", OPTS)
    assert len(receipt.ccr_keys) == 2
    for key in receipt.ccr_keys:
        assert await store.get(ccr.tool_key("c", key)) == b"Bash"
    rule = OPTS.backoff  # 2 lossy compressions counted: 8 more and 3 retrievals back it off
    assert await store.count_tool_use("c", {"Bash": ToolUse(lossy=rule.min_compressions - 2)}, rule) == []
    assert await store.count_tool_use("c", {"Bash": ToolUse(retrieved=3)}, rule) == ["Bash"]


async def test_the_retrieval_tools_own_answers_are_never_touched(store):
    body = anthropic([("headroom_retrieve", "t1", orders()), ("mcp__headroom__headroom_retrieve", "t2", builds())],
                     "Why did ord_00150 fail?")
    out, receipt = await run_pipeline(body, "anthropic", store, "c", OPTS)
    assert out is None and receipt.blocks == 0
