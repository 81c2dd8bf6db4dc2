"""Prefix guard: a tool output Headroom sent on an earlier turn goes out with the same bytes.

Provider prompt caches match exact prefixes, so a block re-sent with different bytes breaks
the cache from that block on, and every later turn pays full price for it. The memo
(:mod:`headroom.transforms.memo`) makes re-sent blocks identical; it can only fail when its
entry is gone (expired, evicted under Redis ``maxmemory``, lost with a flush) or damaged:
the block is then compressed again, with *this* turn's question, and may come out different.

The guard keeps, per original block (the memo entry's ident, key kind ``sent``), a small
record: a digest of the bytes sent for it and the question terms they were compressed with.

* **Detect.** The records are fetched in the memo's own ``get_many``; every block sent is
  compared with its record. A mismatch is a *prefix change*: a cache break Headroom caused,
  i.e. a bug. It is counted in the receipt (then ``headroom_prefix_changes_total``,
  ``/stats`` ``prefix_changes``, a warning with the request id), and the record takes the
  new digest, so that one break counts once, not on every later turn.
* **Prevent.** A block whose memo entry is gone but whose record is still there is
  compressed again with the record's terms, not the current question's: the compressors are
  deterministic, so the same bytes come back, and the memo entry is written again.

Cost per request: one more key per block in the existing ``get_many``; a SHA-256 of each
compressed text sent (about 10 µs per 16 KB; blocks sent unchanged need none: the key already
names their bytes); records are written only for new blocks (in the memo's ``set_many``) and
on a mismatch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from headroom.transforms.memo import BlockId, MemoEntry
from headroom.transforms.terms import Terms

_VERSION = b"1"
_WORDS_SEP = "\x1f"  # ASCII unit separator: never part of a term
UNCHANGED = "="  # the digest of a block sent exactly as the client sent it


def sent_digest(entry: MemoEntry) -> str:
    """What identifies the bytes sent for a block: ``"="`` (the original) or 128 bits of SHA-256."""
    if entry.output is None:
        return UNCHANGED
    return hashlib.sha256(entry.output.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class SentRecord:
    digest: str  # sent_digest of what was sent the last time
    terms: tuple[str, ...] | None  # the question terms it was compressed with; None: not known

    def to_bytes(self) -> bytes:
        """``1|digest`` (terms unknown) or ``1|digest|word\x1fword…``: decoded without JSON."""
        head = _VERSION + b"|" + self.digest.encode("ascii")
        if self.terms is None:
            return head
        return head + b"|" + _WORDS_SEP.join(self.terms).encode("utf-8", "surrogatepass")

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> SentRecord | None:
        """Decode a record; None for a missing or unreadable one (as if never sent)."""
        if raw is None:
            return None
        try:
            parts = raw.decode("utf-8", "surrogatepass").split("|", 2)
        except (UnicodeDecodeError, AttributeError):
            return None
        if len(parts) < 2 or parts[0] != "1" or not parts[1]:
            return None
        if len(parts) == 2:
            return cls(parts[1], None)
        return cls(parts[1], tuple(parts[2].split(_WORDS_SEP)) if parts[2] else ())


class PrefixGuard:
    """One request's records: fetched with the memo, checked once every block is decided."""

    __slots__ = ("ids", "records")

    def __init__(self, ids: list[BlockId]) -> None:
        self.ids = ids
        self.records: list[SentRecord | None] = []

    def keys(self) -> list[str]:
        """The record keys, to append to the memo's ``get_many``."""
        return [bid.sent_key for bid in self.ids]

    def load(self, raw: list[bytes | None]) -> None:
        self.records = [SentRecord.from_bytes(r) for r in raw]

    def terms_for(self, index: int) -> Terms | None:
        """The terms block ``index`` was first compressed with, when it was sent before."""
        record = self.records[index] if index < len(self.records) else None
        if record is None or record.terms is None:
            return None
        return Terms(record.terms)

    def digest_for(self, index: int) -> str | None:
        """The digest of the bytes block ``index`` was sent with before, when it was."""
        record = self.records[index] if index < len(self.records) else None
        return record.digest if record is not None else None

    def check(self, paths: list[tuple], entries: dict[tuple, MemoEntry],
              terms_used: dict[str, Terms]) -> tuple[list[str], dict[str, bytes]]:
        """Compare what is sent now with each block's record.

        ``paths[i]`` is the path of the block ``self.ids[i]`` names, ``entries`` what is
        sent for each path, ``terms_used`` the terms of each memo key compressed just now.
        Returns the changed blocks (short ids of their originals, once each) and the records
        to write: new blocks, blocks with no record yet, and changed ones.
        """
        changed: list[str] = []
        writes: dict[str, bytes] = {}
        seen: set[str] = set()
        for i, (bid, path) in enumerate(zip(self.ids, paths)):
            if bid.sent_key in seen:
                continue
            seen.add(bid.sent_key)
            entry = entries.get(path)
            if entry is None:
                continue
            digest = sent_digest(entry)
            record = self.records[i] if i < len(self.records) else None
            if record is not None and record.digest == digest:
                continue
            if record is not None:
                changed.append(bid.ccr_key)
            used = terms_used.get(bid.memo_key)
            words = used.words if used is not None else (record.terms if record is not None else None)
            writes[bid.sent_key] = SentRecord(digest, words).to_bytes()
        return changed, writes


__all__ = ["UNCHANGED", "PrefixGuard", "SentRecord", "sent_digest"]
