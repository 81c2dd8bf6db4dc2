"""Batch LLMLingua-2 windows from concurrent requests into token-budgeted forward passes.

Why it looks like this:

* Two lanes, each running one forward pass at a time in ONE dedicated thread: short windows
  (``short_window_tokens`` and under) in one, the rest in the other. A pass cannot be
  interrupted, and a pass of two full 512-token windows takes about half a second on a
  CPU even with int8; with one lane a 64-token request waited for it, then was padded to
  512 beside the next one (1.35 s measured). In its own lane it waits only for other short
  windows. No pool beyond that: the model uses the cores inside a pass, and more threads
  only add contention and threads that outlive their callers. Planning (tokenising) and
  assembling run in a third single thread, so the event loop never blocks; that thread
  takes the smallest waiting job first, so a short request is not tokenised after a huge one.
* Batches close on a TOKEN budget, like HuggingFace text-embeddings-inference: every window
  in a batch is padded to the longest one, so a batch costs ``longest x n`` tokens, and the
  next window is refused when ``longest x (n + 1)`` would pass ``max_batch_tokens``. On CPU
  padding is what costs (a 64-token window: 33 ms alone, 245 ms padded to 512).
* Windows are taken in ROTATION, one per request per turn, and the rotation carries over
  from batch to batch, so a 64-token request waits for one window of each request ahead of
  it, not for every window of a 4,000-token one.
* The queue is bounded in windows: a request that finds it full fails at once (Overloaded)
  instead of waiting behind work it cannot outlive.
* A request whose deadline passes, or whose caller goes away, is taken out of the rotation
  at that moment; its windows never reach the model.

The engine is anything with the ``Lingua2`` methods ``plan``, ``keep_probabilities`` and
``assemble`` (``headroom.models.lingua2``).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("headroom.model_server")


class Engine(Protocol):
    def plan(self, text: str) -> Any: ...
    def keep_probabilities(self, windows: list[Any]) -> list[Any]: ...
    def assemble(self, plan: Any, probs: list[Any], rate: float, force_words: Sequence[str] = ()) -> Any: ...


class Overloaded(Exception):
    """The queue is full; the caller should fall back rather than wait."""


class Expired(Exception):
    """The request's deadline passed before its windows were all scored."""


class Closed(Exception):
    """The batcher was closed while the request was pending."""


@dataclass
class BatchReport:
    """One forward pass, as handed to the ``on_batch`` hook (e.g. for histograms)."""

    windows: int
    requests: int
    padded_tokens: int  # longest window x windows: what the model actually computed
    seconds: float


@dataclass
class BatcherStats:
    """Plain counters and gauges; read them at any time from the event loop's thread."""

    queue_windows: int = 0  # gauge: windows admitted but not yet in a batch
    active_requests: int = 0  # gauge: requests admitted and not yet answered
    batches: int = 0
    windows: int = 0  # windows scored
    padded_tokens: int = 0
    max_batch_windows: int = 0
    max_batch_requests: int = 0  # most distinct requests seen in one batch
    inference_s: float = 0.0
    last_batch_ms: float = 0.0
    compressions: int = 0  # requests answered with results
    dropped_windows: int = 0  # windows taken out of the queue unscored
    drops: dict[str, int] = field(
        default_factory=lambda: {"timeout": 0, "cancelled": 0, "overloaded": 0, "error": 0})


@dataclass(eq=False)
class _Request:
    plans: list[Any]
    windows: list[tuple[int, int, Any, int]]  # (text index, index in that text, window, tokens)
    probs: list[list[Any]]
    done: asyncio.Future
    pending: dict[str, collections.deque[int]] = field(default_factory=dict)  # lane -> windows not yet batched
    outstanding: int = 0  # windows not yet scored

    @property
    def unqueued(self) -> int:
        return sum(len(indices) for indices in self.pending.values())


@dataclass(eq=False)
class _Lane:
    """One forward pass at a time, over windows of one size class, in its own thread."""

    name: str
    executor: ThreadPoolExecutor
    rotation: collections.deque[_Request] = field(default_factory=collections.deque)  # requests with windows here
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None


class _SmallestFirst:
    """One daemon thread that runs the smallest waiting job first (planning, assembling).

    A FIFO would make a 64-token request wait while a 100,000-token text queued just before
    it is tokenised. Jobs are plain callables; results come back as asyncio futures.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._closed = False
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def run(self, size: int, job: Callable[[], Any]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._closed:
            future.set_exception(Closed("batcher is closed"))
        else:
            self._jobs.put((size, next(self._order), job, loop, future))
        return future

    def close(self) -> None:
        self._closed = True
        self._jobs.put((-1, -1, None, None, None))  # sorts first: the thread stops next

    def _work(self) -> None:
        while True:
            _, _, job, loop, future = self._jobs.get()
            if job is None:
                break
            try:
                result, error = job(), None
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                result, error = None, exc
            _resolve(loop, future, result, error)
        while not self._jobs.empty():  # closed: whoever still waits gets Closed
            _, _, job, loop, future = self._jobs.get()
            if job is not None:
                _resolve(loop, future, None, Closed("batcher is closed"))


def _resolve(loop: asyncio.AbstractEventLoop, future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    def resolve() -> None:
        if future.done():
            return  # the caller was cancelled meanwhile
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    try:
        loop.call_soon_threadsafe(resolve)
    except RuntimeError:
        pass  # the loop is closed: nobody is waiting


class Batcher:
    def __init__(self, engine: Engine, max_batch_tokens: int = 8192, max_queue_windows: int = 256,
                 max_batch_windows: int = 64, on_batch: Callable[[BatchReport], None] | None = None,
                 short_window_tokens: int = 128) -> None:
        self.engine = engine
        self.max_batch_tokens = max_batch_tokens
        self.max_queue_windows = max_queue_windows
        self.max_batch_windows = max_batch_windows
        self.short_window_tokens = short_window_tokens
        self.on_batch = on_batch
        self.stats = BatcherStats()
        self._lanes = {name: _Lane(name, ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lingua-{name}"))
                       for name in ("short", "long")}
        self._prep = _SmallestFirst("lingua-prep")
        self._active: set[_Request] = set()  # every admitted, unanswered request
        self._closed = False

    async def submit(self, texts: Sequence[str], rate: float, force_words: Sequence[str] = (),
                     deadline: float | None = None) -> list[Any]:
        """Compress ``texts``; one engine result (``LinguaResult``) per text, in order.

        ``deadline`` is a ``time.monotonic()`` instant. Raises Overloaded (queue full),
        Expired (deadline passed), Closed, or whatever the engine raised. Cancelling the
        caller drops the request's remaining windows.
        """
        if self._closed:
            raise Closed("batcher is closed")
        self._admit_check()
        loop = asyncio.get_running_loop()
        for lane in self._lanes.values():
            if lane.task is None:
                lane.task = loop.create_task(self._schedule(lane), name=f"lingua-batcher-{lane.name}")
        texts = list(texts)
        size = sum(len(text) for text in texts)
        plans = await self._prep.run(size, lambda: [self.engine.plan(text) for text in texts])
        if deadline is not None and time.monotonic() >= deadline:
            self.stats.drops["timeout"] += 1
            self.stats.dropped_windows += sum(len(plan.windows) for plan in plans)
            raise Expired("deadline passed while planning")
        if self._closed:
            raise Closed("batcher is closed")
        self._admit_check()  # no await between these checks and the enqueue below
        request = _Request(
            plans=plans,
            windows=[(t, w, window, len(window.input_ids))
                     for t, plan in enumerate(plans) for w, window in enumerate(plan.windows)],
            probs=[[None] * len(plan.windows) for plan in plans],
            done=loop.create_future())
        request.outstanding = len(request.windows)
        if request.windows and rate < 1:  # at rate >= 1 nothing is dropped: no model needed
            self._enqueue(request)
            try:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                await asyncio.wait_for(request.done, timeout)
            except asyncio.TimeoutError:
                self._discard(request, "timeout")
                raise Expired("deadline passed before the windows were scored") from None
            except asyncio.CancelledError:
                self._discard(request, "cancelled")
                raise
            except Exception:
                self._discard(request, "error")
                raise
            finally:
                self._active.discard(request)
                self.stats.active_requests = len(self._active)
        force = tuple(force_words)
        results = await self._prep.run(size, lambda: [
            self.engine.assemble(plan, probs, rate, force) for plan, probs in zip(plans, request.probs)])
        self.stats.compressions += 1
        return results

    async def close(self) -> None:
        """Fail everything pending with Closed and stop the scheduler; a pass in flight finishes."""
        self._closed = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for request in list(self._active):
            if not request.done.done():
                request.done.set_exception(Closed("batcher is closed"))
        for lane in self._lanes.values():
            lane.executor.shutdown(wait=False, cancel_futures=True)
        self._prep.close()

    # -- inside the event loop -------------------------------------------------------------

    def _admit_check(self) -> None:
        if self.stats.queue_windows >= self.max_queue_windows:
            self.stats.drops["overloaded"] += 1
            raise Overloaded(f"{self.stats.queue_windows} windows queued (limit {self.max_queue_windows})")

    def _enqueue(self, request: _Request) -> None:
        for index, (_, _, _, size) in enumerate(request.windows):
            lane = "short" if size <= self.short_window_tokens else "long"
            request.pending.setdefault(lane, collections.deque()).append(index)
        for name in request.pending:
            queue = self._lanes[name]
            queue.rotation.append(request)
            queue.wakeup.set()
        self._active.add(request)
        self.stats.queue_windows += len(request.windows)
        self.stats.active_requests = len(self._active)

    def _discard(self, request: _Request, reason: str) -> None:
        """Take a request out of the rotations: its unbatched windows never reach the model."""
        if not request.done.done():
            request.done.cancel()
        for lane in self._lanes.values():
            try:
                lane.rotation.remove(request)
            except ValueError:
                pass  # none of its windows wait in this lane
        if request.unqueued:
            self.stats.queue_windows -= request.unqueued
            self.stats.dropped_windows += request.unqueued
            request.pending.clear()
        self.stats.drops[reason] += 1

    def _take_batch(self, lane: _Lane) -> list[tuple[_Request, int]]:
        batch: list[tuple[_Request, int]] = []
        longest = 0
        while lane.rotation and len(batch) < self.max_batch_windows:
            request = lane.rotation[0]
            pending = request.pending[lane.name]
            size = request.windows[pending[0]][3]
            if batch and max(longest, size) * (len(batch) + 1) > self.max_batch_tokens:
                break
            lane.rotation.popleft()
            batch.append((request, pending.popleft()))
            longest = max(longest, size)
            if pending:
                lane.rotation.append(request)  # back of the line: one window per turn
        self.stats.queue_windows -= len(batch)
        return batch

    async def _schedule(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not lane.rotation:
                lane.wakeup.clear()
                await lane.wakeup.wait()
                continue
            started = time.perf_counter()
            batch = self._take_batch(lane)
            windows = [request.windows[index][2] for request, index in batch]
            try:
                probs = await loop.run_in_executor(lane.executor, self.engine.keep_probabilities, windows)
                if len(probs) != len(windows):
                    raise RuntimeError(f"engine returned {len(probs)} results for {len(windows)} windows")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("forward pass over %d windows failed", len(windows))
                for request in {request for request, _ in batch}:
                    if not request.done.done():
                        request.done.set_exception(exc)
                continue
            seconds = time.perf_counter() - started
            self._record(batch, seconds)
            for (request, index), scores in zip(batch, probs):
                if request.done.done():
                    continue  # expired or cancelled while its window was in the pass
                text, position, _, _ = request.windows[index]
                request.probs[text][position] = scores
                request.outstanding -= 1
                if request.outstanding == 0:
                    request.done.set_result(None)

    def _record(self, batch: list[tuple[_Request, int]], seconds: float) -> None:
        padded = max(request.windows[index][3] for request, index in batch) * len(batch)
        requests = len({id(request) for request, _ in batch})
        stats = self.stats
        stats.batches += 1
        stats.windows += len(batch)
        stats.padded_tokens += padded
        stats.max_batch_windows = max(stats.max_batch_windows, len(batch))
        stats.max_batch_requests = max(stats.max_batch_requests, requests)
        stats.inference_s += seconds
        stats.last_batch_ms = seconds * 1000
        if self.on_batch is not None:
            try:
                self.on_batch(BatchReport(len(batch), requests, padded, seconds))
            except Exception:
                log.exception("on_batch hook failed")
