"""Dollar savings that respect prompt caching (issue 14, item 1): figures computed by hand.

Rates come from the bundled price table (USD per million tokens):
  claude-sonnet-4-5: input 3.00, cache_read 0.30, cache_write (5 min) 3.75, cache_write_1h 6.00
  gpt-4o:            input 2.50, cache_read (cached tokens) 1.25
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from headroom.pricing import Usage, load_pricing
from headroom.savings import BlockSaving, cache_ttls, usd_saved
from headroom.state.memory_store import MemoryStore
from headroom.transforms import run_pipeline
from testkit.waiting import wait_for

PRICING = load_pricing()
SONNET = PRICING.lookup("claude-sonnet-4-5").price
GPT4O = PRICING.lookup("gpt-4o").price
API_KEY = "sk-ant-savings-test-key-0123456789"


def test_the_rates_used_below_are_the_tables():
    assert (SONNET.input, SONNET.cache_read, SONNET.cache_write, SONNET.cache_write_1h) == (3.0, 0.3, 3.75, 6.0)
    assert (GPT4O.input, GPT4O.cache_read) == (2.5, 1.25)


# --- the pure arithmetic ------------------------------------------------------------------


def test_anthropic_three_turns_by_hand():
    # Turn 1: block A (saves 4 000 tokens) sits before the breakpoint; usage shows cache writes.
    turn1 = usd_saved([BlockSaving(4_000, False, "5m")],
                      Usage(input_tokens=20, cache_write_tokens=1_500, output_tokens=50), SONNET)
    assert turn1 == pytest.approx(4_000 * 3.75 / 1e6)  # = 0.015
    assert turn1 == pytest.approx(0.015)
    # Turn 2: A re-sent (memo hit, usage shows cache reads) + new block B after the breakpoint.
    turn2 = usd_saved([BlockSaving(4_000, True, None), BlockSaving(2_500, False, None)],
                      Usage(input_tokens=900, cache_read_tokens=1_500, output_tokens=50), SONNET)
    assert turn2 == pytest.approx((4_000 * 0.30 + 2_500 * 3.00) / 1e6)  # 0.0012 + 0.0075 = 0.0087
    assert turn2 == pytest.approx(0.0087)
    # Turn 3: A and B re-sent (reads) + new block C before a 1-hour breakpoint (1h writes).
    turn3 = usd_saved([BlockSaving(4_000, True, "1h"), BlockSaving(2_500, True, "1h"),
                       BlockSaving(1_000, False, "1h")],
                      Usage(input_tokens=10, cache_read_tokens=1_500, cache_write_1h_tokens=1_200), SONNET)
    assert turn3 == pytest.approx((4_000 * 0.30 + 2_500 * 0.30 + 1_000 * 6.00) / 1e6)  # 0.00795
    assert turn3 == pytest.approx(0.00795)
    # Pricing every token at the input rate would have claimed 0.0315 / 0.0195 / 0.0225.
    assert turn1 + turn2 + turn3 == pytest.approx(0.03165)


def test_openai_cached_tokens_by_hand():
    # Turn 1: block A new, nothing cached → input rate.
    turn1 = usd_saved([BlockSaving(3_000, False)], Usage.from_openai(
        {"prompt_tokens": 1_200, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 0}}), GPT4O)
    assert turn1 == pytest.approx(3_000 * 2.50 / 1e6)  # 0.0075
    # Turn 2: A re-sent, usage reports cached tokens → cached rate; new block B → input rate.
    turn2 = usd_saved([BlockSaving(3_000, True), BlockSaving(1_000, False)], Usage.from_openai(
        {"prompt_tokens": 2_000, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 1_152}}), GPT4O)
    assert turn2 == pytest.approx((3_000 * 1.25 + 1_000 * 2.50) / 1e6)  # 0.00375 + 0.0025 = 0.00625


def test_no_caching_is_the_input_rate_and_no_usage_claims_nothing():
    blocks = [BlockSaving(5_000, False), BlockSaving(0, False), BlockSaving(1_000, True, "5m")]
    # No cache reads or writes reported: every removed token would have been plain input.
    assert usd_saved(blocks, Usage(input_tokens=3_000, output_tokens=10), SONNET) == pytest.approx(6_000 * 3.0 / 1e6)
    assert usd_saved(blocks, None, SONNET) == 0.0


def test_long_context_rates_apply_when_the_request_crossed_the_threshold():
    usage = Usage(input_tokens=250_000)
    assert usd_saved([BlockSaving(1_000, False)], usage, SONNET) == pytest.approx(1_000 * 6.0 / 1e6)


def test_cache_ttls_follow_the_first_breakpoint_at_or_after_a_block():
    messages = [
        {"role": "user", "content": "q"},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": "A"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "b", "content": "B",
                                      "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c",
                                      "content": [{"type": "text", "text": "C1"},
                                                  {"type": "text", "text": "C2",
                                                   "cache_control": {"type": "ephemeral"}},
                                                  {"type": "text", "text": "C3"}]}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "d", "content": "D"}]},
    ]
    ttls = cache_ttls(messages, [(1, 0, None), (2, 0, None), (3, 0, 0), (3, 0, 1), (3, 0, 2), (4, 0, None)])
    assert ttls == {(1, 0, None): "1h", (2, 0, None): "1h", (3, 0, 0): "5m", (3, 0, 1): "5m",
                    (3, 0, 2): None, (4, 0, None): None}


# --- what the pipeline records per block -----------------------------------------------------


def listing(tag: str, n: int = 300) -> str:
    """A big JSON array the compressor trims (distinct per tag, so each block is new)."""
    return json.dumps([{"id": i, "name": f"{tag}-item-{i}", "path": f"/srv/{tag}/file_{i}.py", "size": i * 37}
                       for i in range(n)], indent=1)


def tool_turn(call_id: str, content: str, cache: dict | None = None) -> list[dict]:
    result = {"type": "tool_result", "tool_use_id": call_id, "content": content}
    if cache:
        result["cache_control"] = cache
    return [
        {"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": "list_files", "input": {}}]},
        {"role": "user", "content": [result]},
    ]


def conversation(turn: int) -> list[dict]:
    """Turn 1: A with a breakpoint. Turn 2: A (breakpoint kept) + B after it. Turn 3: + C, 1h breakpoint."""
    messages = [{"role": "user", "content": "list the project files"}]
    messages += tool_turn("toolu_a", listing("alpha"), {"type": "ephemeral"})
    if turn >= 2:
        messages += tool_turn("toolu_b", listing("beta"))
    if turn >= 3:
        messages += tool_turn("toolu_c", listing("gamma"), {"type": "ephemeral", "ttl": "1h"})
    return messages


async def test_receipt_records_each_blocks_saving_memo_hit_and_breakpoint():
    store = MemoryStore()
    receipts = []
    for turn in (1, 2, 3):
        body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": conversation(turn)}
        _new, receipt = await run_pipeline(body, "anthropic", store, "caller")
        receipts.append(receipt)
    r1, r2, r3 = receipts
    a = r1.block_savings[0].tokens_saved
    assert a > 1_000
    assert [(b.memo_hit, b.cache_ttl) for b in r1.block_savings] == [(False, "5m")]
    assert [(b.memo_hit, b.cache_ttl) for b in r2.block_savings] == [(True, "5m"), (False, None)]
    assert [(b.memo_hit, b.cache_ttl) for b in r3.block_savings] == [(True, "5m"), (True, "1h"), (False, "1h")]
    assert r2.block_savings[0].tokens_saved == a  # the same bytes, the same saving
    for receipt in receipts:  # nothing dropped to fit: the blocks account for every token saved
        assert sum(b.tokens_saved for b in receipt.block_savings) == receipt.tokens_saved


# --- the real proxy ---------------------------------------------------------------------------


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for match in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_proxy_reports_dollars_saved_in_header_log_stats_and_metrics(start_proxy, mock, tmp_path):
    log_path = tmp_path / "requests.jsonl"
    proxy = start_proxy("--no-cache", "--log-file", str(log_path))
    # The usage the "upstream" reports on each turn (Anthropic fields), as the mock is told.
    usages = [
        {"input_tokens": 30, "cache_creation_input_tokens": 1_400, "cache_read_input_tokens": 0},
        {"input_tokens": 900, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1_400},
        {"input_tokens": 30, "cache_creation_input_tokens": 1_100, "cache_read_input_tokens": 2_300,
         "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1_100}},
    ]
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    saved_headers, tokens_saved = [], []
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        for turn, usage in enumerate(usages, 1):
            body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": conversation(turn)}
            resp = client.post("/v1/messages", json=body,
                               headers={**headers, "x-mock-usage": json.dumps({**usage, "output_tokens": 40})})
            assert resp.status_code == 200, resp.text
            saved_headers.append(float(resp.headers["x-headroom-usd-saved"]))
            tokens_saved.append(int(resp.headers["x-headroom-tokens-saved"]))
        # An error has no usage: no dollars header, nothing claimed.
        error = client.post("/v1/messages", json={"model": "claude-sonnet-4-5", "max_tokens": 8,
                                                  "messages": conversation(1)},
                            headers={**headers, "x-mock-status": "500"})
        assert error.status_code == 500 and "x-headroom-usd-saved" not in error.headers
        # A request with nothing to compress and no caching: saves nothing, spends something.
        plain = client.post("/v1/messages", json={"model": "claude-sonnet-4-5", "max_tokens": 8,
                                                  "messages": [{"role": "user", "content": "hi"}]}, headers=headers)
        assert plain.headers["x-headroom-usd-saved"] == "0.000000"  # with the receipt's "saved 0"

    # Per-block savings from the receipts: A's saving is turn 1's; B's is what turn 2 adds; C's turn 3's.
    a = tokens_saved[0]
    b = tokens_saved[1] - a
    c = tokens_saved[2] - a - b
    assert a > 0 and b > 0 and c > 0
    expected = [
        a * 3.75 / 1e6,  # turn 1: A before the 5-minute breakpoint, cache writes reported
        (a * 0.30 + b * 3.00) / 1e6,  # turn 2: A re-sent (cache reads), B after the breakpoint
        ((a + b) * 0.30 + c * 6.00) / 1e6,  # turn 3: A, B re-sent (reads), C before the 1h breakpoint
    ]
    assert saved_headers == pytest.approx(expected, abs=1e-6)  # the header has 6 decimals
    # What the usage cost, by hand: input 3.00, output 15.00, read 0.30, write 3.75, 1h write 6.00.
    spent = [
        (30 * 3.00 + 40 * 15.00 + 1_400 * 3.75) / 1e6,
        (900 * 3.00 + 40 * 15.00 + 1_400 * 0.30) / 1e6,
        (30 * 3.00 + 40 * 15.00 + 2_300 * 0.30 + 1_100 * 6.00) / 1e6,
    ]

    lines = wait_for(lambda: len(found := log_path.read_text().splitlines()) >= 5 and found,
                     what="five request-log lines")
    records = [json.loads(line) for line in lines]
    assert [r["usd_saved"] for r in records[:3]] == pytest.approx(expected, abs=1e-8)
    assert [r["usd_spent"] for r in records[:3]] == pytest.approx(spent, abs=1e-8)
    assert records[3]["usd_saved"] == 0 and records[3]["usd_spent"] == 0  # the error
    assert records[4]["usd_saved"] == 0 and records[4]["usd_spent"] > 0
    caller = records[0]["api_key_hash"]

    stats = httpx.get(f"{proxy.url}/stats").json()
    total_saved, total_spent = sum(expected), sum(spent) + records[4]["usd_spent"]
    assert stats["usd"]["saved"] == pytest.approx(total_saved, abs=1e-5)
    assert stats["usd"]["spent"] == pytest.approx(total_spent, abs=1e-5)
    assert stats["usd"]["by_provider"]["anthropic"] == pytest.approx({"spent": total_spent, "saved": total_saved},
                                                                     abs=1e-5)
    assert stats["usd"]["by_caller"][caller] == pytest.approx({"spent": total_spent, "saved": total_saved}, abs=1e-5)
    assert stats["models"]["claude-sonnet-4-5"]["usd_saved"] == pytest.approx(total_saved, abs=1e-5)
    assert not any("usd" in key for key in httpx.get(f"{proxy.url}/health").json())  # /health keeps its shape

    text = httpx.get(f"{proxy.url}/metrics").text
    assert metric(text, "headroom_usd_saved_total", provider="anthropic", model="claude-sonnet-4-5") \
        == pytest.approx(total_saved, abs=1e-9)
    assert metric(text, "headroom_usd_spent_total", provider="anthropic", model="claude-sonnet-4-5") \
        == pytest.approx(total_spent, abs=1e-9)
