"""Fixtures for the transform tests: the corpus outcomes (computed once) and a store that
counts its round trips. Prints the corpus savings table at the end of the run."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from headroom.state.memory_store import MemoryStore

_TIKTOKEN_DIR = Path(__file__).resolve().parents[2] / ".tiktoken"
if _TIKTOKEN_DIR.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_TIKTOKEN_DIR))

_REPORT: list = []


@pytest.fixture(scope="session")
def corpus_outcomes():
    from testkit.corpus.report import run_all

    outcomes = asyncio.run(run_all())
    _REPORT[:] = outcomes
    return {o.case.name: o for o in outcomes}


class CountingStore(MemoryStore):
    """A MemoryStore that records every call made on it (one call = one round trip on Redis)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []
        self._depth = 0

    async def _record(self, name: str, method, *args):
        if not self._depth:
            self.calls.append(name)
        self._depth += 1
        try:
            return await method(*args)
        finally:
            self._depth -= 1

    async def get(self, key):
        return await self._record("get", super().get, key)

    async def set(self, key, value, ttl=None):
        return await self._record("set", super().set, key, value, ttl)

    async def get_many(self, keys):
        return await self._record("get_many", super().get_many, keys)

    async def set_many(self, items, ttl=None):
        return await self._record(f"set_many:{ttl:g}" if ttl else "set_many", super().set_many, items, ttl)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


def pytest_terminal_summary(terminalreporter):
    if _REPORT:
        from testkit.corpus.report import table

        terminalreporter.section("headroom corpus savings")
        terminalreporter.write_line(table(_REPORT))
