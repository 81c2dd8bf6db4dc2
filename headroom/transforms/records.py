"""Multi-line records: ``git log`` commits, ``dpkg -s`` / ``apt-cache show`` / ``pip show``
stanzas, ``kubectl describe`` blocks, INI sections.

A question names one line of a record (a commit's subject, a file in its ``--stat``, a
package's name) but the answer is usually another line of the same record (the hash, the
author, the version). Keeping only the matching line cuts the record's identity away from it,
so a line that must stay takes its whole record with it.

Records are found without knowing the tool: the output's first line opens with a key (its first
word and the separator after it: ``commit ``, ``Package:``, ``[section]``'s ``[``) and that key
opens other unindented lines too, far enough apart that records are at least two lines long
on average. Each such line starts a record that runs to the next one. A pure function of the
lines.
"""

from __future__ import annotations

import re
from bisect import bisect_right

from headroom.transforms.base import Limits
from headroom.transforms.scan import Joined
from headroom.transforms.select import rare_term_scores
from headroom.transforms.terms import Terms

MAX_RECORD_LINES = 60  # a longer record keeps its first lines and the lines around the match
HEAD_LINES = 8
AROUND = 2
MIN_RECORDS = 3
BEST_SHARE = 0.5  # records scoring under this share of the best match are not what was asked about
_KEY = re.compile(r"^(?:\[|[A-Za-z][\w.\-]*(?::\s|\s))")


def starts(lines: list[str]) -> list[int]:
    """Indices of the lines that open a record, or [] when the output is not made of records."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return []
    match = _KEY.match(lines[first])
    if match is None:
        return []
    key = match.group(0)
    found = [i for i, line in enumerate(lines) if line.startswith(key)]
    if len(found) < MIN_RECORDS or len(found) * 2 > len(lines) - first:
        return []
    return found


def expand(lines: list[str], indices: list[int], record_starts: list[int] | None = None) -> set[int]:
    """``indices`` and, for each, the record it belongs to (bounded: a long record keeps its
    first :data:`HEAD_LINES` lines and the lines around the index)."""
    found = starts(lines) if record_starts is None else record_starts
    keep = set(indices)
    if not found:
        return keep
    n = len(lines)
    for i in indices:
        r = bisect_right(found, i) - 1
        if r < 0:
            continue
        start = found[r]
        stop = found[r + 1] if r + 1 < len(found) else n
        if stop - start <= MAX_RECORD_LINES:
            keep.update(range(start, stop))
        else:
            keep.update(range(start, start + HEAD_LINES))
            keep.update(range(max(start, i - AROUND), min(stop, i + AROUND + 1)))
    return keep


def _bounds(found: list[int], n: int) -> list[tuple[int, int]]:
    return [(start, found[r + 1] if r + 1 < len(found) else n) for r, start in enumerate(found)]


def matching(lines: list[str], found: list[int], terms: Terms, limits: Limits) -> set[int]:
    """Lines of the records the question is about, whole (bounded as in :func:`expand`).

    Terms are judged per record, not per line: "Version" is on one line in ten of a ``dpkg -s``
    listing but in every stanza, so it says nothing about which package is meant. Each record
    scores the rarity of the selective terms it holds (a term in k records adds 1/k); records
    under half the best score go, so a quoted subject that names one commit is not drowned by
    its common words naming thirty.
    """
    if not terms or not found:
        return set()
    bounds = _bounds(found, len(lines))
    texts = ["\n".join(lines[a:b]) for a, b in bounds]
    score, words = rare_term_scores(texts, terms, limits)
    if not score:
        return set()
    best = max(score.values())
    chosen = sorted(r for r, value in score.items() if value >= BEST_SHARE * best)[: limits.max_matches]
    keep: set[int] = set()
    for r in chosen:
        start, stop = bounds[r]
        if stop - start <= MAX_RECORD_LINES:
            keep.update(range(start, stop))
            continue
        keep.update(range(start, start + HEAD_LINES))
        inner = Joined(lines[start:stop]).texts_with(tuple((w, b) for w, b in terms.scan_words if w in words[r]))
        for i in sorted(inner)[: limits.max_matches]:
            keep.update(range(max(start, start + i - AROUND), min(stop, start + i + AROUND + 1)))
    return keep
