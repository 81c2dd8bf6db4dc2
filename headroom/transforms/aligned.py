"""Where the columns are in whitespace-aligned command output (``ps aux``, ``kubectl get``,
``docker ps``, ``df -h``, ``netstat``, ``ls -l``).

Splitting on runs of two spaces fails on exactly these tables: ``ps`` separates ``PID %CPU``
by one space and its ``COMMAND`` holds spaces, ``df`` has a ``Mounted on`` column, ``kubectl``
prints ``47 (3m12s ago)`` as one value. What these tools share is alignment: every value of a
column starts where its header word starts (text) or ends where it ends (numbers). So a
header is found by checking that alignment row by row, and each word of a row is given to the
header word it overlaps, or, overlapping none, to the column on its left (the rest of a
multi-word value). ``ls -l`` has no header row; its nine fields are fixed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

_WORD = re.compile(r"\S+")
_LS_ROW = re.compile(r"^[-dlcbpsD][rwxsStT-]{9}[.@+]?\s+\d+\s")
_LS_NAMES = ("mode", "links", "owner", "group", "size", "month", "day", "time", "name")
_MAX_PREAMBLE = 2  # "total 48" (ls), "Active Internet connections" (netstat)
_ALIGNED_SHARE = 0.75  # rows that must line up with a header word for it to count as a column


@dataclass(frozen=True)
class Layout:
    header: int  # index of the header line; lines before it are a preamble kept as is
    names: tuple[str, ...]
    spans: tuple[tuple[int, int], ...] = ()  # header words' (start, end); empty: ``ls -l``
    cuts: tuple[int, ...] = ()  # between each two columns, a position that is blank in most rows

    @property
    def first_row(self) -> int:
        return self.header + (1 if self.spans else 0)

    def cells(self, line: str) -> list[str]:
        """The row's value in every column ("" where it has none)."""
        if not self.spans:
            parts = line.split(None, len(self.names) - 1)
            return parts + [""] * (len(self.names) - len(parts))
        size = len(line)
        cuts = self.cuts
        if all(p >= size or line[p] == " " for p in cuts):  # no value crosses a cut: slice
            bounds = (0, *cuts, size)
            return [" ".join(line[a:b].split()) for a, b in pairwise(bounds)]
        return self._by_words(line)

    def _by_words(self, line: str) -> list[str]:
        """Each word to the header word it overlaps most, or else to the column on its left."""
        spans = self.spans
        last = len(spans) - 1
        out: list[list[str]] = [[] for _ in spans]
        col = 0
        for word in _WORD.finditer(line):
            start, end = word.span()
            best, best_overlap = col, 0
            j = col
            while j <= last and spans[j][0] < end:
                overlap = min(end, spans[j][1]) - max(start, spans[j][0])
                if overlap > best_overlap:
                    best, best_overlap = j, overlap
                if best_overlap == 0 and spans[j][0] <= start:
                    best = j  # no overlap yet: the column on its left
                j += 1
            col = best
            out[col].append(word.group())
        return [" ".join(words) for words in out]


def find(lines: list[str]) -> Layout | None:
    """The layout of an aligned table, or None. Blank lines are ignored; ``lines`` may be a
    sample of the table (its head and tail)."""
    if sum(1 for line in lines if line.strip()) < 5:
        return None
    for start in range(min(_MAX_PREAMBLE + 1, len(lines))):
        if not lines[start].strip():
            continue
        rows = [line for line in lines[start:] if line.strip()]
        if len(rows) < 5:
            return None
        if _LS_ROW.match(rows[0]) and sum(1 for row in rows if _LS_ROW.match(row)) >= 0.8 * len(rows):
            return Layout(start, _LS_NAMES)
        layout = _with_header(lines[start].rstrip(), rows[1:], start)
        if layout is not None:
            return layout
    return None


def _with_header(header: str, rows: list[str], index: int) -> Layout | None:
    words = list(_WORD.finditer(header))
    if not 3 <= len(words) <= 30 or not any(c.isupper() for c in header):
        return None
    if sum(1 for w in words if any(c.isdigit() for c in w.group())) > 0.3 * len(words):
        return None  # a data row (or a log line), not column names
    spans = tuple(w.span() for w in words)
    need = max(3, 0.6 * len(spans))
    if _aligned_columns(spans, rows[:8]) < need or _aligned_columns(spans, rows) < need:
        return None  # (the first eight rows are a cheap first look: most texts fail there)
    return Layout(index, tuple(w.group() for w in words), spans, _cuts(spans, rows))


def _cuts(spans: tuple[tuple[int, int], ...], rows: list[str]) -> tuple[int, ...]:
    """For each gap between header words, the position blank in the most rows, the rightmost
    of those (a value may hold spaces: ``47 (3m12s ago)``; the blank just before the next
    column is past its end). Where a row is blank at every cut, no value crosses one and
    slicing is exact; any other row is split word by word instead."""
    sample = rows[:40] + rows[-40:] if len(rows) > 80 else rows
    cuts = []
    for (_, end), (start, _) in pairwise(spans):
        best, best_blank = end, -1
        for p in range(end, start):
            blank = sum(1 for row in sample if p >= len(row) or row[p] == " ")
            if blank >= best_blank:
                best, best_blank = p, blank
        cuts.append(best)
    return tuple(cuts)


def _aligned_columns(spans: tuple[tuple[int, int], ...], rows: list[str]) -> int:
    """How many header words most rows line up with (a value starting or ending with it)."""
    need = _ALIGNED_SHARE * len(rows)
    return sum(1 for s, e in spans if sum(1 for row in rows if _starts_at(row, s) or _ends_at(row, e)) >= need)


def _starts_at(row: str, s: int) -> bool:
    return s < len(row) and row[s] != " " and (s == 0 or row[s - 1] == " ")


def _ends_at(row: str, e: int) -> bool:
    return 0 < e <= len(row) and row[e - 1] != " " and (e == len(row) or row[e] == " ")
