"""Shared state: one store interface (:mod:`~headroom.state.store`), an in-memory and a
Redis implementation, the key layout, budget arithmetic, caller identity and the one LRU
bound every in-process cache uses.

The proxy picks the store at start: :class:`~headroom.state.memory_store.MemoryStore` for one
worker, :class:`~headroom.state.redis_store.RedisStore` (``--redis-url``, or a private
``redis-server`` started by :mod:`headroom.workers.redis_server`) for several.
"""
