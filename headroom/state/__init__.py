"""Shared state: one store interface, an in-memory and a Redis implementation.

``RedisStore`` and ``PrivateRedis`` live in :mod:`headroom.state.redis_store` and
:mod:`headroom.state.redis_server`; they are not imported here so that the proxy starts
without redis-py when no Redis is configured.
"""

from headroom.state.identity import caller_hash, new_secret
from headroom.state.store import (
    GuardRequest,
    GuardResult,
    MemoryStore,
    Store,
    StoreStats,
    StoreUnavailable,
    make_key,
)

__all__ = [
    "GuardRequest",
    "GuardResult",
    "MemoryStore",
    "Store",
    "StoreStats",
    "StoreUnavailable",
    "caller_hash",
    "make_key",
    "new_secret",
]
