"""What every compressor receives and returns.

Compressors are pure functions ``compress(text, brief) -> Compressed | None``: the same text and
brief give the same bytes, and ``None`` means "leave this block exactly as it is". When a
compressor drops content (``omitted > 0``) its output carries a CCR marker with
``brief.ccr_key`` and the pipeline stores the original under that key.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

from headroom.transforms.terms import NO_TERMS, Terms

MISSING = object()  # marks "this object has no such key" in table columns


@dataclass(frozen=True)
class Limits:
    """Knobs shared by the compressors (the pipeline derives them from its options)."""

    lossy_min_chars: int = 6_000  # lossless output above this may become lossy
    max_items: int = 40  # arrays/tables longer than this are trimmed in lossy mode
    head_items: int = 5
    tail_items: int = 3
    max_anomalies: int = 25
    max_matches: int = 60
    max_term_share: float = 0.2  # a term matching more items than this is not selective
    head_lines: int = 15
    tail_lines: int = 15
    nearby_lines: int = 2  # lines kept either side of an error line (grep -C)
    max_matches_per_file: int = 3  # grep: matches kept per file beyond question matches
    extract_prose: bool = True  # long prose: extractive compression (off when the model server does prose)


@dataclass(frozen=True)
class Brief:
    """What a compressor is told about the block it compresses: the question's terms (what
    must survive), the retrieval key of the original, and the limits."""

    terms: Terms = NO_TERMS
    ccr_key: str = ""
    limits: Limits = Limits()
    # Lines of the block before the text the compressor sees (a client's envelope header, split
    # off by the router): added to every line number a note or marker names, so that the
    # numbers are the whole original's, as a retrieval counts them.
    line_offset: int = 0

    def line(self, index: int) -> int:
        """The original's 1-based number of the compressed text's line ``index`` (0-based)."""
        return index + 1 + self.line_offset


def lossless_only(limits: Limits) -> Limits:
    """Limits under which no compressor drops anything: every lossy step waits for a text
    longer than any there is, and long prose is not extracted (the retrieval policy's
    back-off, :mod:`headroom.transforms.retrieval_policy`)."""
    return replace(limits, lossy_min_chars=sys.maxsize, extract_prose=False)


@dataclass(frozen=True)
class Compressed:
    text: str
    transforms: tuple[str, ...]
    omitted: int = 0  # items/lines dropped; > 0 means the original must be kept for retrieval
