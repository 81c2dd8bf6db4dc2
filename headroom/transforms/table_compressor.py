"""Aligned text tables (``kubectl get``, ``docker ps``, ``ps aux``, ``df``, ``ls -l``,
``netstat``, markdown tables).

Column padding costs little with a modern BPE (a run of spaces is one token), so rows stay as
they are. Big tables are trimmed like JSON arrays: any preamble (``total 48``) and the header
once, head and tail rows, rows with rare values in a column (one pod in ``CrashLoopBackOff``
among 80 ``Running``), numeric outliers (a process at 99% CPU, a 40 GB file), near-full
percentages (a disk at ``100%``), rows with failure words and rows with a selective question
term survive; gaps are noted in place, naming the lines of the original they stand for
(``… 135 rows omitted: lines 7–141``), and a CCR marker gives the key to the full table.
Columns come from :mod:`aligned` (header alignment), or from two-space or ``|`` separators.
"""

from __future__ import annotations

import re

from headroom.transforms import aligned, ccr
from headroom.transforms.base import Brief, Compressed
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
# "42", "0.5", "7.8G", "512Mi", "91%", "47 (3m12s ago)"; not "1/1", "3d", "10:02"
_NUMBER = re.compile(r"^([-+]?\d+(?:\.\d+)?)([KMGTPE]i?B?|B)?%?(?=$|\s)")
_SCALE = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50, "E": 2**60}
_NEAR_FULL = 90.0  # a percentage at or above this is a resource running out
_NEAR_FULL_SHARE = 0.2  # unless that many rows are: then it is normal here


def _tab_cells(line: str) -> list[str]:
    return line.split("\t")


def _cells(line: str) -> list[str]:
    if line.startswith("|"):
        return [c.strip() for c in line.strip().strip("|").split("|")]
    return _CELL.findall(line)


def _number(value: str | None) -> float | None:
    if not value:
        return None
    match = _NUMBER.match(value)
    if match is None:
        return None
    unit = match.group(2) or ""
    return float(match.group(1)) * _SCALE[unit[:1]]


def _near_full(name: str, values: list, numbers: list) -> list[tuple[int, int]]:
    """(3, index) for percentages near 100 in a percentage column, when such rows are rare."""
    present = [v for v in values if v]
    if "%" not in name and not (present and sum(1 for v in present if v.endswith("%")) >= 0.8 * len(present)):
        return []
    hits = [i for i, x in enumerate(numbers) if x is not None and x >= _NEAR_FULL]
    if len(hits) > _NEAR_FULL_SHARE * len(values):
        return []
    return [(3, i) for i in hits]


def _layout(lines: list[str]):
    """(index of the first row, column names, row splitter)."""
    if "\t" in lines[0]:  # tab-separated: the first line may be a header or a row (du)
        return 1, _tab_cells(lines[0]), _tab_cells
    layout = aligned.find(lines)
    if layout is not None:
        return layout.first_row, list(layout.names), layout.cells
    start = 2 if len(lines) > 1 and _MD_RULE.match(lines[1]) else 1
    return start, _cells(lines[0]), _cells


def compress(text: str, brief: Brief) -> Compressed | None:
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if len(text) > brief.limits.lossy_min_chars and lines:
        start, header, split = _layout(lines)
        if len(lines) - start > brief.limits.max_items:
            return _trim(lines, start, header, split, brief)
    out = "\n".join(lines)
    if len(out) > len(text) * 0.95 or out == text:  # (== : an empty block)
        return None
    return Compressed(out, ("table:trim",))


def _trim(lines: list[str], start: int, header: list[str], split, brief: Brief) -> Compressed | None:
    lim = brief.limits
    rows = lines[start:]
    cells = [split(row) for row in rows]
    scored: list[tuple[int, int]] = []
    for c, name in enumerate(header):
        values = [r[c] if c < len(r) else None for r in cells]
        numbers = [_number(v) for v in values]
        scored.extend(column_anomalies(name, values, numbers))
        scored.extend(_near_full(name, values, numbers))
    scored.extend((1, i) for i in error_hits(rows, max_share=0.2))
    anomalies = rank_anomalies(scored, lim.max_anomalies)
    kept = keep_indices(len(rows), lim.head_items, lim.tail_items, anomalies, term_hits(rows, brief.terms, lim))
    holes = gaps(kept, len(rows))
    out = lines[:start]
    last = omitted = 0
    ranges: list[tuple[int, int]] = []  # the original's lines left out, 1-based
    for a, b in holes:  # rows[a:b] are lines[start + a:start + b]
        out.extend(rows[last:a])
        first, final = brief.line(start + a), brief.line(start + b - 1)
        where = f"line {first}" if b - a == 1 else f"lines {first}\u2013{final}"
        note = f"\u2026 {b - a} rows omitted: {where}"
        if sum(len(row) + 1 for row in rows[a:b]) <= len(note) + 1:
            out.extend(rows[a:b])  # the rows cost no more than their note
        else:
            out.append(note)
            omitted += b - a
            ranges.append((first, final))
        last = b
    if not omitted:
        return None
    out.insert(0, ccr.marker(omitted, len(rows), "rows", brief.ccr_key, ranges))
    out.extend(rows[last:])
    return Compressed("\n".join(out), ("table:lossy",), omitted)
