"""Polling instead of fixed sleeps: wait for a condition, bounded in time, and say what failed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> T:
    """Call ``check`` until it returns something truthy (returned); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout:g}s (last: {value!r})")
        time.sleep(interval)


async def async_wait_for(check: Callable[[], Awaitable[T]], timeout: float = 10.0, interval: float = 0.02,
                         what: str = "condition") -> T:
    """:func:`wait_for` for an async check."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout:g}s (last: {value!r})")
        await asyncio.sleep(interval)
