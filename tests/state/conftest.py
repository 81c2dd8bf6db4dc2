"""Fixtures for the state tests: a store factory parametrized over the memory and Redis
implementations (the real redis-server fixtures live in ``tests/conftest.py``)."""

from __future__ import annotations


import pytest

from headroom.state.store import MemoryStore

from headroom.state.redis_store import RedisStore

# Skips without redis-server (fails instead in CI, see tests/conftest.py).
needs_redis = pytest.mark.usefixtures("redis_server")


class FakeClock:
    """Epoch seconds that move only when told to."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture(params=["memory", "redis"])  # "redis" pulls in the redis_server fixture
def kind(request) -> str:
    return request.param


@pytest.fixture
async def make_store(kind, request):
    """``await make_store(**kwargs)`` → a fresh store of the parametrized kind (Redis is
    flushed first); ``time_source`` pins the clock of buckets, budgets and cache recency."""
    created = []
    server = request.getfixturevalue("redis_server") if kind == "redis" else None
    flushed = False

    async def make(**kwargs):
        nonlocal flushed
        if kind == "memory":
            store = MemoryStore(**kwargs)
        else:
            store = RedisStore(server.url, **kwargs)
            if not flushed:
                await store._run("FLUSHDB")
                flushed = True
        created.append(store)
        return store

    yield make
    for store in created:
        await store.close()
