"""Per-block memo: what was sent for a tool output the first time it was seen.

This is what makes compression cache-safe. A block is compressed once, on first sight, with
that turn's question; every later turn looks the result up by content hash and re-sends the
same bytes, even though the question has changed since. Blocks left unchanged (too small,
source code, or a failed transform) are memoised too, as "unchanged", so that they stay
byte-identical on later turns as well.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from headroom.state.keys import MEMO_KIND, SENT_KIND, make_key
from headroom.state.lru import LRU, text_keyed
from headroom.transforms import ccr
from headroom.transforms.detect import tool_hint

_VERSION = 1


@dataclass(frozen=True)
class BlockId:
    memo_key: str  # store key of the memo entry
    ccr_key: str  # visible retrieval key, should the block lose content
    sent_key: str = ""  # store key of the prefix guard's record (what was sent, see prefix_guard)


_digests: LRU[str, str] = text_keyed(16_000_000)


def digest(text: str) -> str:
    """SHA-256 hex of a block, remembered per process: a conversation re-sends its blocks."""
    known = _digests.get(text)
    if known is None:
        known = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        _digests.put(text, known)
    return known


def clear_digests() -> None:
    _digests.clear()


def block_id(caller: str, text: str, tool_name: str | None, tool_input: dict | None = None,
             structured: bool = False) -> BlockId:
    """One SHA-256 of the text gives both keys; the tool's class is part of the memo key
    because the same bytes from ``Read`` (kept exact) and ``Bash`` are treated differently,
    and so is a structured block's (``value``: its output is JSON, never the notation)."""
    digest_hex = digest(text)
    kind = "value" if structured else tool_hint(tool_name, tool_input) or "any"
    ident = f"{kind}.{digest_hex[:32]}"
    return BlockId(make_key(MEMO_KIND, caller, ident), digest_hex[: ccr.KEY_CHARS],
                   make_key(SENT_KIND, caller, ident))


@dataclass(frozen=True)
class MemoEntry:
    output: str | None  # None: send the original unchanged
    tokens_before: int
    tokens_after: int
    transforms: tuple[str, ...] = ()
    ccr_key: str | None = None

    def to_bytes(self) -> bytes:
        return json.dumps(
            [_VERSION, self.output, self.tokens_before, self.tokens_after, list(self.transforms), self.ccr_key],
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8", "surrogatepass")

    @classmethod
    def from_bytes(cls, raw: bytes) -> MemoEntry | None:
        """Decode an entry; None for anything unreadable (treated as a miss)."""
        try:
            version, output, before, after, transforms, key = json.loads(raw.decode("utf-8", "surrogatepass"))
        except (ValueError, TypeError, UnicodeDecodeError):
            return None
        if version != _VERSION:
            return None
        return cls(output, int(before), int(after), tuple(transforms), key)
