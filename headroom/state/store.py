"""The store interface every piece of shared state goes through.

Keys follow ``hr:{kind}:{callerhash}:{id}`` (see :func:`make_key`). Every entry has a TTL
or sits under an LRU bound, so nothing grows without limit. The in-memory store serves a
single worker; a Redis implementation with the same methods serves many.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol


def make_key(kind: str, caller: str, ident: str) -> str:
    """Build a namespaced store key; ``caller`` is already a hash, never an API key."""
    return f"hr:{kind}:{caller}:{ident}"


class Store(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    async def get_many(self, keys: list[str]) -> list[bytes | None]: ...

    async def set_many(self, items: dict[str, bytes], ttl: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def incr(self, key: str, amount: int = 1) -> int: ...


class MemoryStore:
    """Process-local store: an LRU-bounded dict whose entries may carry an expiry time."""

    def __init__(self, max_entries: int = 100_000, clock=time.monotonic) -> None:
        self._data: OrderedDict[str, tuple[bytes | int, float | None]] = OrderedDict()
        self._max_entries = max_entries
        self._clock = clock

    def __len__(self) -> int:
        return len(self._data)

    def _live(self, key: str):
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= self._clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def _put(self, key: str, value, ttl: float | None) -> None:
        expires = self._clock() + ttl if ttl else None
        self._data[key] = (value, expires)
        self._data.move_to_end(key)
        while len(self._data) > self._max_entries:
            self._data.popitem(last=False)

    async def get(self, key: str) -> bytes | None:
        value = self._live(key)
        return value if isinstance(value, bytes) or value is None else str(value).encode()

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._put(key, value, ttl)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [await self.get(k) for k in keys]

    async def set_many(self, items: dict[str, bytes], ttl: float | None = None) -> None:
        for key, value in items.items():
            self._put(key, value, ttl)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def incr(self, key: str, amount: int = 1) -> int:
        current = self._live(key)
        value = (int(current) if current is not None else 0) + amount
        expires = self._data[key][1] if key in self._data else None
        self._data[key] = (value, expires)
        self._data.move_to_end(key)
        return value
