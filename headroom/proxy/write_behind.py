"""The write-behind queue: after-response store writes, batched into one round trip.

Apart from the bookkeeping that fills it (:mod:`headroom.proxy.bookkeeping`): each worker's
:class:`~headroom.proxy.resources.WorkerResources` owns one, and drains it when the worker stops.
"""

from __future__ import annotations

import asyncio
import logging

from headroom.observability import metrics
from headroom.state.store import CachePut, Settlement, Store, StoreUnavailable

log = logging.getLogger("headroom.proxy")


class WriteBehind:
    """After-response store writes (settlements, cache puts), coalesced into one round trip.

    A write waits ``delay`` seconds for company: under load many requests share one Redis
    pipeline instead of paying a round trip of CPU each. Waiting only makes a budget
    reservation stand a moment longer (never an overshoot) and a fresh answer cacheable a
    moment later.
    """

    #: Writes waiting at most: beyond them the batch goes at once, without waiting for company.
    MAX_PENDING = 1024

    def __init__(self, store: Store, delay: float = 0.01) -> None:
        self.store = store
        self.delay = delay
        self.settles: list[Settlement] = []
        self.puts: list[CachePut] = []
        self._task: asyncio.Task | None = None

    def add(self, settle: Settlement | None, put: CachePut | None) -> None:
        if settle:
            self.settles.append(settle)
        if put:
            self.puts.append(put)
        if len(self.settles) + len(self.puts) >= self.MAX_PENDING:
            # The batch leaves the queue now, whatever the store does: memory stays bounded.
            settles, puts, self.settles, self.puts = self.settles, self.puts, [], []
            asyncio.get_running_loop().create_task(self._write(settles, puts))
        elif self._task is None and (self.settles or self.puts):
            self._task = asyncio.get_running_loop().create_task(self._flush_after_delay())

    async def _flush_after_delay(self) -> None:
        await asyncio.sleep(self.delay)
        self._task = None
        await self.flush()

    async def flush(self) -> None:
        settles, puts, self.settles, self.puts = self.settles, self.puts, [], []
        await self._write(settles, puts)

    async def _write(self, settles: list[Settlement], puts: list[CachePut]) -> None:
        if not (settles or puts):
            return
        try:
            await self.store.settle_and_put(settles, puts)
        except StoreUnavailable:
            metrics.store_unavailable()
        except Exception:  # bookkeeping must never take a worker down
            log.exception("writing %d settlements and %d cache entries failed", len(settles), len(puts))

    async def drain(self) -> None:
        if self._task is not None:
            await self._task
        await self.flush()
