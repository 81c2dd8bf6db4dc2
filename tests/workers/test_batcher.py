"""The scheduler on its own, against a deterministic engine: rotation, token budget, drops."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from headroom.workers.batcher import Batcher, BatchReport, Closed, Expired, Overloaded
from testkit.waiting import async_wait_for
from tests.workers.fake_engine import FakeEngine, words

WAIT = 5.0  # no test step waits longer than this


async def entered(engine: FakeEngine) -> None:
    """Wait until the engine has started a forward pass (which the gate is now holding)."""
    assert await asyncio.to_thread(engine.entered.acquire, True, WAIT), "no forward pass started"


async def settle(condition, timeout: float = WAIT) -> None:
    async def check():
        return condition()

    await async_wait_for(check, timeout, interval=0.005)


async def test_round_trip_results_in_order():
    batcher = Batcher(FakeEngine(window=4))
    try:
        results = await batcher.submit(["a b c d e f", "x y", ""], rate=0.5, force_words=["b"])
        assert [r.text for r in results] == ["a b c e", "x", ""]
        assert [(r.tokens_before, r.tokens_after) for r in results] == [(6, 4), (2, 1), (0, 0)]
        assert batcher.stats.compressions == 1
        assert batcher.stats.queue_windows == 0 and batcher.stats.active_requests == 0
    finally:
        await batcher.close()


async def test_forward_passes_run_in_one_dedicated_thread_per_lane():
    engine = FakeEngine(window=8)
    batcher = Batcher(engine, max_batch_tokens=16)
    try:
        await asyncio.gather(*(batcher.submit([words(f"r{i}", 40)], 0.5) for i in range(6)))
        assert len(engine.batches) > 6
        assert len(engine.threads) == 1  # every window is short: one lane, one thread
        assert threading.current_thread().name not in engine.threads
        await batcher.submit([words("big", 8)], 0.5)
    finally:
        await batcher.close()
    engine = FakeEngine(window=256)
    batcher = Batcher(engine, max_batch_tokens=1024)
    try:
        await asyncio.gather(batcher.submit([words("long", 1024)], 0.5), batcher.submit([words("s", 20)], 0.5))
        assert len(engine.threads) == 2 and all(name.startswith("lingua-") for name in engine.threads)
    finally:
        await batcher.close()


async def test_concurrent_requests_share_a_batch_within_the_token_budget():
    engine = FakeEngine(window=64, gated=True)
    reports: list[BatchReport] = []
    batcher = Batcher(engine, max_batch_tokens=512, on_batch=reports.append)
    try:
        first = asyncio.create_task(batcher.submit([words("a", 64)], 0.5))
        await entered(engine)  # "a" is in the model; the next three queue up meanwhile
        rest = [asyncio.create_task(batcher.submit([words(tag, 64 * 3)], 0.5)) for tag in "bcd"]
        await settle(lambda: batcher.stats.queue_windows == 9)
        for _ in range(10):
            engine.gate.release()
        await asyncio.wait_for(asyncio.gather(first, *rest), WAIT)
        # 64-token windows, budget 512: a batch holds at most 512 // 64 = 8 windows
        assert [len(batch) for batch in engine.batches] == [1, 8, 1]
        assert {w[0] for w in engine.batches[1]} == {"b", "c", "d"}
        assert batcher.stats.max_batch_requests == 3
        assert batcher.stats.max_batch_windows == 8
        assert [(r.windows, r.padded_tokens) for r in reports] == [(1, 64), (8, 512), (1, 64)]
    finally:
        await batcher.close()


async def test_batch_closes_when_padding_to_the_longest_would_pass_the_budget():
    engine = FakeEngine(window=100, gated=True)
    batcher = Batcher(engine, max_batch_tokens=400)
    try:
        blocker = asyncio.create_task(batcher.submit([words("z", 10)], 0.5))
        await entered(engine)
        # windows in rotation order: s(10), l(100), s2(10), ... ; padded to 100 each
        tasks = []
        for text, queued in ((words("s", 10), 1), (words("l", 300), 4), (words("t", 10), 5)):
            tasks.append(asyncio.create_task(batcher.submit([text], 0.5)))
            await settle(lambda queued=queued: batcher.stats.queue_windows == queued)
        for _ in range(10):
            engine.gate.release()
        await asyncio.wait_for(asyncio.gather(blocker, *tasks), WAIT)
        # s(10) alone would allow 40; l(100) makes it 100 x 2; t -> 100 x 3; l again -> 100 x 4 = 400
        assert [len(b) for b in engine.batches] == [1, 4, 1]
        assert engine.batches[1] == ["s0", "l0", "t0", "l100"]
        assert batcher.stats.padded_tokens == 10 + 400 + 100
    finally:
        await batcher.close()


async def test_short_request_is_not_queued_behind_every_window_of_a_long_one():
    """Long windows share passes in rotation; a short window does not even wait for them."""
    engine = FakeEngine(window=512, gated=True)
    batcher = Batcher(engine, max_batch_tokens=1024)  # two full windows per pass
    try:
        long = asyncio.create_task(batcher.submit([words("long", 512 * 10)], 0.5))
        await entered(engine)  # pass 1: long's first two windows, held in the model
        assert engine.batches == [["long0", "long512"]]
        short = asyncio.create_task(batcher.submit([words("short", 64)], 0.5))
        await entered(engine)  # the short lane starts its own pass while pass 1 is still running
        assert engine.batches[1] == ["short0"] and not long.done()
        for _ in range(12):
            engine.gate.release()
        await asyncio.wait_for(asyncio.gather(short, long), WAIT)
        long_passes = [batch for batch in engine.batches if batch[0].startswith("long")]
        assert [len(batch) for batch in long_passes] == [2, 2, 2, 2, 2]  # padded to 512, two a pass
    finally:
        await batcher.close()


async def test_rotation_carries_over_between_batches_so_no_request_starves():
    engine = FakeEngine(window=10, gated=True)
    batcher = Batcher(engine, max_batch_tokens=40)  # four windows per pass
    try:
        blocker = asyncio.create_task(batcher.submit(["x"], 0.5))
        await entered(engine)
        tasks = [asyncio.create_task(batcher.submit([words(f"r{i:02d}-", 20)], 0.5)) for i in range(10)]
        await settle(lambda: batcher.stats.queue_windows == 20)
        for _ in range(20):
            engine.gate.release()
        await asyncio.wait_for(asyncio.gather(blocker, *tasks), WAIT)
        order = [w for batch in engine.batches[1:] for w in batch]
        first_windows = [w for w in order if w.endswith("-0")]
        assert order[:10] == first_windows  # every request's first window before any second one
        assert [len(b) for b in engine.batches[1:]] == [4, 4, 4, 4, 4]
    finally:
        await batcher.close()


async def test_full_queue_answers_overloaded_at_once():
    engine = FakeEngine(window=10, gated=True)
    batcher = Batcher(engine, max_batch_tokens=10, max_queue_windows=5)
    try:
        blocker = asyncio.create_task(batcher.submit(["x"], 0.5))
        await entered(engine)
        big = asyncio.create_task(batcher.submit([words("big", 80)], 0.5))  # 8 windows: admitted
        await settle(lambda: batcher.stats.queue_windows == 8)
        started = time.monotonic()
        with pytest.raises(Overloaded):
            await batcher.submit(["y"], 0.5)
        assert time.monotonic() - started < 0.5
        assert batcher.stats.drops["overloaded"] == 1
        for _ in range(20):
            engine.gate.release()
        await asyncio.wait_for(asyncio.gather(blocker, big), WAIT)
        await batcher.submit(["y"], 0.5)  # room again
    finally:
        await batcher.close()


async def test_expired_request_windows_never_reach_the_model():
    engine = FakeEngine(window=10, gated=True)
    batcher = Batcher(engine, max_batch_tokens=10)
    try:
        blocker = asyncio.create_task(batcher.submit(["x"], 0.5))
        await entered(engine)
        with pytest.raises(Expired):
            await batcher.submit([words("late", 50)], 0.5, deadline=time.monotonic() + 0.05)
        assert batcher.stats.drops["timeout"] == 1
        assert batcher.stats.dropped_windows == 5
        assert batcher.stats.queue_windows == 0
        engine.gate.release()
        await asyncio.wait_for(blocker, WAIT)
        await asyncio.sleep(0.05)  # kept: a non-event (the expired window never runs) has nothing to poll
        assert engine.batches == [["x"]]
        with pytest.raises(Expired):  # already past: refused after planning, never queued
            await batcher.submit(["y"], 0.5, deadline=time.monotonic() - 1)
        assert batcher.stats.drops["timeout"] == 2 and batcher.stats.dropped_windows == 6
        assert engine.batches == [["x"]]
    finally:
        await batcher.close()


async def test_cancelled_caller_drops_its_windows():
    engine = FakeEngine(window=10, gated=True)
    batcher = Batcher(engine, max_batch_tokens=10)
    try:
        blocker = asyncio.create_task(batcher.submit(["x"], 0.5))
        await entered(engine)
        gone = asyncio.create_task(batcher.submit([words("gone", 30)], 0.5))
        await settle(lambda: batcher.stats.queue_windows == 3)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        assert batcher.stats.drops["cancelled"] == 1 and batcher.stats.queue_windows == 0
        engine.gate.release()
        await asyncio.wait_for(blocker, WAIT)
        assert engine.batches == [["x"]]
    finally:
        await batcher.close()


async def test_engine_failure_fails_that_batch_only():
    engine = FakeEngine(window=10, fail_next=True)
    batcher = Batcher(engine)
    try:
        with pytest.raises(ValueError, match="exploded"):
            await batcher.submit(["a b"], 0.5)
        results = await batcher.submit(["a b c"], 0.5)
        assert results[0].text == "a c"
        assert batcher.stats.active_requests == 0 and batcher.stats.queue_windows == 0
    finally:
        await batcher.close()


async def test_close_fails_pending_requests():
    engine = FakeEngine(window=10, gated=True)
    batcher = Batcher(engine, max_batch_tokens=10)
    blocker = asyncio.create_task(batcher.submit(["x"], 0.5))
    await entered(engine)
    queued = asyncio.create_task(batcher.submit([words("q", 20)], 0.5))
    await settle(lambda: batcher.stats.queue_windows == 2)
    await batcher.close()
    engine.gate.release()
    for task in (blocker, queued):
        with pytest.raises(Closed):
            await asyncio.wait_for(task, WAIT)
    with pytest.raises(Closed):
        await batcher.submit(["y"], 0.5)


async def test_smallest_preparation_job_runs_first():
    engine = FakeEngine(window=512)
    batcher = Batcher(engine)
    try:
        held = asyncio.create_task(batcher.submit(["hold on"], 0.5))
        await settle(lambda: engine.planned == ["hold"])  # the prep thread is busy with it
        # kept: each sleep lets the task queue its job; the queue is the batcher's private state
        huge = asyncio.create_task(batcher.submit([words("huge", 5000)], 0.5))
        await asyncio.sleep(0.02)
        small = asyncio.create_task(batcher.submit([words("small", 10)], 0.5))
        await asyncio.sleep(0.02)
        engine.plan_gate.set()
        await asyncio.wait_for(asyncio.gather(held, huge, small), WAIT)
        assert engine.planned == ["hold", "small0", "huge0"]
    finally:
        await batcher.close()


async def test_close_releases_callers_waiting_for_preparation():
    engine = FakeEngine(window=512)
    batcher = Batcher(engine)
    held = asyncio.create_task(batcher.submit(["hold on"], 0.5))
    await settle(lambda: engine.planned == ["hold"])
    waiting = asyncio.create_task(batcher.submit(["later"], 0.5))
    await asyncio.sleep(0.02)  # kept: lets the task queue its job (the batcher's private state)
    await batcher.close()
    engine.plan_gate.set()
    for task in (waiting, held):  # one waited for the prep thread, one was in it
        with pytest.raises(Closed):
            await asyncio.wait_for(task, WAIT)
