"""The retrieval policy's counts and back-offs: the same semantics in memory and in Redis.

A tool backs off for a caller when its retrievals exceed the threshold share of its lossy
compressions, over at least ``min_compressions``; the flag is a plain entry the pipeline
reads with ``get_many``, the counts start from zero once it ends, and callers never share
counts.
"""

from __future__ import annotations

import asyncio
import time

from headroom.state.keys import backoff_key
from headroom.state.tool_use import BackoffRule, ToolUse
from testkit.waiting import async_wait_for

RULE = BackoffRule(threshold=0.2, min_compressions=10, period_s=60.0)
CALLER, OTHER = "c0ffee" * 5 + "00", "beef" * 8


async def _lossy(store, n: int, tool: str = "Bash", caller: str = CALLER, rule: BackoffRule = RULE) -> list[str]:
    return await store.count_tool_use(caller, {tool: ToolUse(lossy=n)}, rule)


async def _retrieved(store, n: int = 1, tool: str = "Bash", caller: str = CALLER,
                     rule: BackoffRule = RULE) -> list[str]:
    started: list[str] = []
    for _ in range(n):
        started += await store.count_tool_use(caller, {tool: ToolUse(retrieved=1)}, rule)
    return started


async def test_a_tool_backs_off_once_retrievals_pass_the_share_of_its_compressions(make_store):
    store = await make_store()
    assert await _lossy(store, 10) == []
    assert await _retrieved(store, 2) == []  # 2 of 10: at the threshold, not past it
    assert await store.get(backoff_key(CALLER, "Bash")) is None
    assert await _retrieved(store) == ["Bash"]  # 3 of 10
    assert await store.get_many([backoff_key(CALLER, "Bash")]) != [None]  # what the pipeline reads
    (backoff,) = await store.tool_backoffs()
    assert (backoff.caller, backoff.tool) == (CALLER, "Bash")
    assert 55 < backoff.until - time.time() <= 60.5


async def test_too_few_compressions_never_back_off_until_there_are_enough(make_store):
    store = await make_store()
    await _lossy(store, 9)
    assert await _retrieved(store, 5) == []  # 5 of 9: a high share, but under 10 compressions
    assert await _lossy(store, 1) == ["Bash"]  # the 10th compression makes the share count


async def test_a_backed_off_tool_learns_nothing_and_starts_from_zero_when_it_ends(make_store):
    store = await make_store()
    short = BackoffRule(threshold=0.2, min_compressions=10, period_s=0.3)
    await _lossy(store, 10, rule=short)
    assert await _retrieved(store, 3, rule=short) == ["Bash"]
    assert await _retrieved(store, 5, rule=short) == []  # old outputs retrieved meanwhile: not counted
    await async_wait_for(lambda: _gone(store), timeout=5, what="the back-off's end")
    assert await store.tool_backoffs() == []
    assert await _lossy(store, 10, rule=short) == []
    assert await _retrieved(store, 2, rule=short) == []  # 2 of 10 afresh: the 5 above were not kept


async def _gone(store) -> bool:
    return await store.get(backoff_key(CALLER, "Bash")) is None


async def test_callers_and_tools_are_counted_apart(make_store):
    store = await make_store()
    await store.count_tool_use(CALLER, {"Bash": ToolUse(lossy=10), "Grep": ToolUse(lossy=10)}, RULE)
    await _lossy(store, 10, caller=OTHER)
    assert await _retrieved(store, 3) == ["Bash"]
    assert await store.get(backoff_key(CALLER, "Grep")) is None  # the same caller's other tool
    assert await store.get(backoff_key(OTHER, "Bash")) is None  # the same tool for another caller
    assert await _retrieved(store, 2, caller=OTHER) == []
    assert [(b.caller, b.tool) for b in await store.tool_backoffs()] == [(CALLER, "Bash")]


async def test_one_call_counts_several_tools_and_says_which_backed_off(make_store):
    store = await make_store()
    await store.count_tool_use(CALLER, {"Bash": ToolUse(lossy=10, retrieved=2), "Grep": ToolUse(lossy=10)}, RULE)
    started = await store.count_tool_use(CALLER, {"Grep": ToolUse(retrieved=3), "Bash": ToolUse(retrieved=1)}, RULE)
    assert started == ["Grep", "Bash"]


async def test_counts_are_halved_so_recent_behaviour_weighs_most(make_store):
    store = await make_store()
    rule = BackoffRule(threshold=0.2, min_compressions=10, halve_at=40)
    await store.count_tool_use(CALLER, {"Bash": ToolUse(lossy=39, retrieved=7)}, rule)  # 7 of 39: under
    assert await _lossy(store, 1, rule=rule) == []  # 40 → 20 compressions, 7 → 3 retrievals: 0.15
    assert await _retrieved(store, 1, rule=rule) == []  # 4 of 20: at the threshold
    assert await _retrieved(store, 1, rule=rule) == ["Bash"]  # 5 of 20


async def test_a_zero_threshold_never_backs_off(make_store):
    store = await make_store()
    off = BackoffRule(threshold=0.0)
    await store.count_tool_use(CALLER, {"Bash": ToolUse(lossy=50, retrieved=50)}, off)
    assert await store.get(backoff_key(CALLER, "Bash")) is None and await store.tool_backoffs() == []


async def test_concurrent_counting_loses_nothing(make_store):
    first, second = await make_store(), await make_store()
    shared = type(first).__name__ == "RedisStore"
    await _lossy(first, 100)
    calls = [store.count_tool_use(CALLER, {"Bash": ToolUse(retrieved=1)}, RULE)
             for _ in range(21) for store in ((first, second) if shared else (first,))]
    started = [tool for tools in await asyncio.gather(*calls) for tool in tools]
    assert started == ["Bash"]  # exactly one call crossed 20 of 100, whichever worker made it


async def test_the_list_of_back_offs_is_soonest_first_and_bounded(make_store):
    store = await make_store()
    for period, tool in ((30.0, "Grep"), (10.0, "Bash"), (20.0, "exec_command")):
        rule = BackoffRule(threshold=0.2, min_compressions=1, period_s=period)
        assert await store.count_tool_use(CALLER, {tool: ToolUse(lossy=1, retrieved=1)}, rule) == [tool]
    assert [b.tool for b in await store.tool_backoffs()] == ["Bash", "exec_command", "Grep"]
    assert [b.tool for b in await store.tool_backoffs(limit=2)] == ["Bash", "exec_command"]
