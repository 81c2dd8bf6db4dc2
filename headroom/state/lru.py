"""The one least-recently-used bound every in-process cache and the memory store share.

A mapping that forgets its least recently used entries once their total weight passes
``max_weight``. By default every entry weighs 1 (a bound on entries); ``weigh`` gives
entries a weight of their own (the characters of a text key, say), and ``max_item_weight``
keeps a single huge entry from flushing everything else. ``on_evict`` hears of every entry
the bound pushes out (not of those removed by :meth:`LRU.pop`), so that a second index over
the same keys can follow.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    __slots__ = ("_data", "_max_item", "_on_evict", "_weigh", "max_weight", "weight")

    def __init__(self, max_weight: int, weigh: Callable[[K, V], int] | None = None,
                 max_item_weight: int | None = None, on_evict: Callable[[K, V], None] | None = None) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._weigh = weigh
        self._max_item = max_item_weight
        self._on_evict = on_evict
        self.max_weight = max_weight
        self.weight = 0  # total weight held

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def _weight(self, key: K, value: V) -> int:
        return 1 if self._weigh is None else self._weigh(key, value)

    def get(self, key: K) -> V | None:
        """The value (now the most recently used), or None."""
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def peek(self, key: K) -> V | None:
        """The value, leaving the order as it is."""
        return self._data.get(key)

    def put(self, key: K, value: V) -> None:
        """Store ``value`` as the most recently used entry; evict from the old end until the
        bound holds. An entry heavier than ``max_item_weight`` is not kept at all."""
        weight = self._weight(key, value)
        if self._max_item is not None and weight > self._max_item:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self.weight -= self._weight(key, old)
        self._data[key] = value
        self.weight += weight
        while self.weight > self.max_weight and self._data:
            evicted = self.pop_oldest()
            if self._on_evict is not None:
                self._on_evict(*evicted)

    def pop(self, key: K) -> V | None:
        value = self._data.pop(key, None)
        if value is not None:
            self.weight -= self._weight(key, value)
        return value

    def oldest(self) -> tuple[K, V] | None:
        """The least recently used entry, without touching it."""
        for key in self._data:
            return key, self._data[key]
        return None

    def pop_oldest(self) -> tuple[K, V]:
        key, value = self._data.popitem(last=False)
        self.weight -= self._weight(key, value)
        return key, value

    def clear(self) -> None:
        self._data.clear()
        self.weight = 0


def text_keyed(max_chars: int = 16_000_000) -> LRU[str, V]:
    """An LRU keyed by (possibly large) strings, bounded by the characters of its keys.

    Why: every turn re-sends the whole conversation, so the same tool outputs and prompts come
    back again and again as new string objects. Python hashes a string once per object (about
    four times faster than SHA-256 and far faster than a BPE), so a dict lookup is the cheapest
    way to recognise text already seen in this process. A text over an eighth of the bound is
    not kept.
    """
    return LRU(max_chars, weigh=lambda text, _value: len(text), max_item_weight=max_chars // 8)
