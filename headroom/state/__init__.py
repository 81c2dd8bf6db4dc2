"""Shared state: one store interface, an in-memory and (later) a Redis implementation."""

from headroom.state.store import MemoryStore, Store, make_key

__all__ = ["MemoryStore", "Store", "make_key"]
