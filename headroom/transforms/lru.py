"""A process-local LRU keyed by (possibly large) strings, bounded by the characters it holds.

Why: every turn re-sends the whole conversation, so the same tool outputs and prompts come
back again and again as new string objects. Python hashes a string once per object (about
four times faster than SHA-256 and far faster than a BPE), so a dict lookup is the cheapest
way to recognise text already seen in this process.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class TextLRU(Generic[V]):
    def __init__(self, max_chars: int = 16_000_000) -> None:
        self._data: OrderedDict[str, V] = OrderedDict()
        self._chars = 0
        self.max_chars = max_chars

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, text: str) -> bool:
        return text in self._data

    @property
    def chars(self) -> int:
        return self._chars

    def get(self, text: str) -> V | None:
        value = self._data.get(text)
        if value is not None:
            self._data.move_to_end(text)
        return value

    def put(self, text: str, value: V) -> None:
        """Remember ``value`` for ``text`` (texts over 1/8 of the bound are not kept)."""
        if len(text) > self.max_chars // 8 or text in self._data:
            return
        self._data[text] = value
        self._chars += len(text)
        while self._chars > self.max_chars:
            old, _ = self._data.popitem(last=False)
            self._chars -= len(old)

    def clear(self) -> None:
        self._data.clear()
        self._chars = 0
