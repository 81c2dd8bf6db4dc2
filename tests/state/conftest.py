"""Fixtures for the state tests: a store factory parametrized over the memory and Redis
implementations (the real redis-server fixtures live in ``tests/conftest.py``)."""

from __future__ import annotations

import pytest

from headroom.state.memory_store import MemoryStore
from headroom.state.redis_store import RedisStore


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
