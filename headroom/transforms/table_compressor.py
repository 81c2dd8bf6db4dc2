"""Aligned text tables (``kubectl get``, ``docker ps``, ``ps``, markdown tables).

Column padding costs little with a modern BPE (a run of spaces is one token), so rows stay as
they are. Big tables are trimmed like JSON arrays: the header, head and tail rows, rows with
rare values in a column (one pod in ``CrashLoopBackOff`` among 80 ``Running``), rows with
failure words and rows with a selective question term survive; gaps are noted in place and a
CCR marker gives the key to the full table.
"""

from __future__ import annotations

import re

from headroom.transforms import ccr
from headroom.transforms.base import Compressed, Context
from headroom.transforms.select import (
    column_anomalies,
    error_hits,
    gaps,
    keep_indices,
    rank_anomalies,
    term_hits,
)

_CELL = re.compile(r"\S(?: ?\S)*")
_MD_RULE = re.compile(r"^\|?\s*:?-{3,}")


def _cells(line: str) -> list[str]:
    if line.startswith("|"):
        return [c.strip() for c in line.strip().strip("|").split("|")]
    return _CELL.findall(line)


def compress(text: str, ctx: Context) -> Compressed | None:
    lim = ctx.limits
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    start = 1
    if len(lines) > 1 and _MD_RULE.match(lines[1]):
        start = 2
    rows = lines[start:]
    if len(text) <= lim.lossy_min_chars or len(rows) <= lim.max_items:
        out = "\n".join(lines)
        if len(out) > len(text) * 0.95 or out == text:  # (== : an empty block)
            return None
        return Compressed(out, ("table:trim",))
    header = _cells(lines[0])
    cells = [_cells(row) for row in rows]
    scored: list[tuple[int, int]] = []
    for c, name in enumerate(header):
        values = [r[c] if c < len(r) else None for r in cells]
        scored.extend(column_anomalies(name, values))
    scored.extend((1, i) for i in error_hits(rows, max_share=0.2))
    anomalies = rank_anomalies(scored, lim.max_anomalies)
    kept = keep_indices(len(rows), lim.head_items, lim.tail_items, anomalies, term_hits(rows, ctx.terms, lim))
    holes = gaps(kept, len(rows))
    omitted = sum(stop - start_ for start_, stop in holes)
    if not omitted:
        return None
    out = [ccr.marker(omitted, len(rows), "rows", ctx.ccr_key)] + lines[:start]
    last = 0
    for a, b in holes:
        out.extend(rows[last:a])
        out.append(f"\u2026 {b - a} rows omitted")
        last = b
    out.extend(rows[last:])
    return Compressed("\n".join(out), ("table:lossy",), omitted)
