"""After the answer has gone out: close the books on the requests answered.

Each exchange becomes a :class:`~headroom.outcome.RequestOutcome` (timings, usage, cost);
the rate-limit and budget charge is settled with the reported usage; a cacheable answer is
stored; and the outcome reaches every consumer of figures — global stats, Prometheus
metrics, the request log. None of it is on the client's critical path, and a store that is
down costs a counted miss, never an error.

The books close in the turn of the event loop after the answers went out, on every request
answered in the turn before together (:class:`~headroom.proxy.open_books.OpenBooks`): under
load one turn answers many requests (15 to 20 at 64 connections on 2 cores), and the
metrics they share are then written once for all of them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from headroom.observability import metrics
from headroom.proxy.exchange import Exchange, outcome_of
from headroom.proxy.guards import settlement
from headroom.proxy.stats import FLUSH_INTERVAL_S
from headroom.state.store import StoreUnavailable

if TYPE_CHECKING:
    from headroom.outcome import RequestOutcome
    from headroom.proxy.resources import WorkerResources

log = logging.getLogger("headroom.proxy")


def schedule(resources: WorkerResources, exchange: Exchange) -> None:
    """Close the books on ``exchange`` once the current response has been written."""
    resources.open_books.add(exchange, close_books, resources)


def close_books(resources: WorkerResources) -> None:
    """Close the books on every request answered since the last call."""
    outcomes: list[RequestOutcome] = []
    for exchange in resources.open_books.take():
        try:
            outcome = outcome_of(exchange, resources.pricing)
            charge = settlement(exchange.guard, exchange.usage, outcome.cost_usd, outcome.status,
                                outcome.cache == "hit")
            answer = None
            if exchange.answer is not None and exchange.cache_key and outcome.caller and outcome.error is None:
                answer = (outcome.caller, exchange.cache_key, exchange.answer.encode())
            resources.writes.add(charge, answer)
            resources.stats_buffer.record(outcome)
            outcomes.append(outcome)
            if resources.request_log is not None:
                resources.request_log.write(outcome)
        except Exception:  # bookkeeping must never take a worker down
            log.exception("closing the books on request %s failed", exchange.request_id)
    if outcomes:
        metrics.observe_all(outcomes)


async def flush_stats(resources: WorkerResources) -> None:
    """Add this worker's buffered statistics to the shared totals (kept for later if the store is down)."""
    delta = resources.stats_buffer.take()
    if delta is None:
        return
    try:
        await resources.store.stats_record(delta)
    except StoreUnavailable:
        metrics.store_unavailable()
        resources.stats_buffer.add(delta)


async def flush_stats_forever(resources: WorkerResources) -> None:
    while True:
        await asyncio.sleep(FLUSH_INTERVAL_S)
        await flush_stats(resources)
