"""The requests answered whose books are not closed yet (see :mod:`headroom.proxy.bookkeeping`).

Why a queue rather than a callback per request: under load one turn of the event loop
answers many requests (15 to 20 at 64 connections on 2 cores), and closing their books
together writes each metric they share once for all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headroom.proxy.exchange import Exchange


class OpenBooks:
    """Exchanges waiting for the next turn of the event loop, when ``close`` (given with
    the first of them) takes them all."""

    __slots__ = ("_due_in", "exchanges")

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self._due_in: asyncio.AbstractEventLoop | None = None  # the loop the closing is due in

    def add(self, exchange: Exchange, close: Callable[[Any], None], arg: Any) -> None:
        """Queue ``exchange``; the first one queued since the last :meth:`take` has
        ``close(arg)`` called in the next turn of the running loop."""
        loop = asyncio.get_running_loop()
        if not self.exchanges or self._due_in is not loop:  # (a loop that stopped never ran it)
            self._due_in = loop
            loop.call_soon(close, arg)
        self.exchanges.append(exchange)

    def take(self) -> list[Exchange]:
        """Every exchange queued, leaving none."""
        exchanges, self.exchanges = self.exchanges, []
        return exchanges
