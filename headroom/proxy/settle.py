"""After the answer has gone out: close the books on one request.

Timings, usage and cost go into the request's :class:`~headroom.outcome.RequestOutcome`;
the rate-limit and budget charge is reconciled with the reported usage; a cacheable
answer is stored; and the outcome reaches every consumer of figures — global stats,
Prometheus metrics, the request log. None of it is on the client's critical path, and a
store that is down costs a counted miss, never an error.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter

from sanic import Sanic

from headroom.observability import metrics
from headroom.pricing import cost_usd
from headroom.proxy.forward import Exchange
from headroom.proxy.guards import settlement
from headroom.proxy.stats import FLUSH_INTERVAL_S, delta_of
from headroom.state.store import StoreUnavailable

log = logging.getLogger("headroom.proxy")


def schedule(app: Sanic, exchange: Exchange) -> None:
    """Run :func:`settle` once the current response has been written."""
    asyncio.get_running_loop().call_soon(settle, app, exchange)


def finish_outcome(app: Sanic, exchange: Exchange) -> None:
    """Fill the outcome's timings, usage, cost and error kind from the exchange."""
    outcome = exchange.outcome
    now = perf_counter()
    outcome.latency_ms = (now - exchange.started) * 1000.0
    outcome.overhead_ms = max(0.0, outcome.latency_ms - exchange.upstream_ms)
    if exchange.first_byte_at:
        outcome.ttfb_ms = (exchange.first_byte_at - exchange.started) * 1000.0
    usage = exchange.usage
    if usage is not None:
        outcome.input_tokens, outcome.output_tokens = usage.input_tokens, usage.output_tokens
        outcome.cache_read_tokens = usage.cache_read_tokens
        outcome.cache_write_tokens = usage.cache_write_tokens + usage.cache_write_1h_tokens
        outcome.cost_usd = cost_usd(app.ctx.pricing, outcome.model or "", usage)
        if exchange.receipt is None:
            # Untouched by the pipeline: it sent what the upstream counted, and saved nothing.
            outcome.tokens_before = outcome.tokens_after = usage.total_input_tokens
    if outcome.error is None and outcome.status >= 400:
        outcome.error = f"upstream_{outcome.status // 100}xx"  # relayed from the upstream as it was


class WriteBehind:
    """After-response store writes (settlements, cache puts), coalesced into one round trip.

    A write waits ``delay`` seconds for company: under load many requests share one Redis
    pipeline instead of paying a round trip of CPU each. Waiting only makes a budget
    reservation stand a moment longer (never an overshoot) and a fresh answer cacheable a
    moment later.
    """

    def __init__(self, app: Sanic, delay: float = 0.01) -> None:
        self.app = app
        self.delay = delay
        self.settles: list = []
        self.puts: list = []
        self._task: asyncio.Task | None = None

    def add(self, settle: tuple | None, put: tuple | None) -> None:
        if settle:
            self.settles.append(settle)
        if put:
            self.puts.append(put)
        if self._task is None and (self.settles or self.puts):
            self._task = asyncio.get_running_loop().create_task(self._flush_after_delay())

    async def _flush_after_delay(self) -> None:
        await asyncio.sleep(self.delay)
        self._task = None
        await self.flush()

    async def flush(self) -> None:
        settles, puts, self.settles, self.puts = self.settles, self.puts, [], []
        if not (settles or puts):
            return
        try:
            await self.app.ctx.store.finish(settles, puts)
        except StoreUnavailable:
            metrics.store_unavailable()
        except Exception:  # bookkeeping must never take a worker down
            log.exception("writing %d settlements and %d cache entries failed", len(settles), len(puts))

    async def drain(self) -> None:
        if self._task is not None:
            await self._task
        await self.flush()


def settle(app: Sanic, exchange: Exchange) -> None:
    outcome = exchange.outcome
    try:
        finish_outcome(app, exchange)
        charge = settlement(exchange.guard, exchange.usage, outcome.cost_usd, outcome.status,
                            outcome.cache == "hit")
        answer = None
        if exchange.answer is not None and exchange.cache_key and outcome.caller and outcome.error is None:
            answer = (outcome.caller, exchange.cache_key, exchange.answer.encode())
        app.ctx.writes.add(charge, answer)
        app.ctx.stats.add(delta_of(outcome))
        metrics.observe(outcome)
        if app.ctx.request_log is not None:
            app.ctx.request_log.write(outcome)
    except Exception:  # bookkeeping must never take a worker down
        log.exception("settling request %s failed", outcome.request_id)


async def flush_stats(app: Sanic) -> None:
    """Add this worker's buffered statistics to the shared totals (kept for later if the store is down)."""
    delta = app.ctx.stats.take()
    if delta is None:
        return
    try:
        await app.ctx.store.stats_record(delta)
    except StoreUnavailable:
        metrics.store_unavailable()
        app.ctx.stats.add(delta)


async def flush_stats_forever(app: Sanic) -> None:
    while True:
        await asyncio.sleep(FLUSH_INTERVAL_S)
        await flush_stats(app)
