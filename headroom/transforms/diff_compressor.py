"""Unified diffs (``git diff``, ``git show``, ``diff -u``): the file list and the hunks asked about.

A diff of a few commits is tens of thousands of tokens, and a question is about one change in
it ("what changed in proxy/upstream.py about timeouts?"). What a reader needs around that is
the shape of the whole change (which files, which hunks, how big) and the asked-about hunks
themselves. So, in lossy mode only (a diff over ``lossy_min_chars``):

* every line outside a hunk is kept: ``diff --git``, ``index``, ``---`` / ``+++``, mode and
  rename lines, ``Binary files … differ``, and a ``git show`` commit header: the file list;
* every hunk's ``@@ -a,b +c,d @@ context`` line is kept: where the change is and in what function;
* a hunk the question touches (its text, or its file's path, holds selective question terms,
  scored by rarity as in :mod:`records`) is kept whole; a very long one keeps its head and the
  lines around the matches;
* every other hunk body becomes one note naming its line range in the original and how many
  lines it adds and removes (``… lines 120–153 omitted: +30 −2``), so a retrieval can ask for
  exactly those lines.

Hunks are delimited by the counts in their ``@@`` line (a removed line that reads ``-- x``
shows as ``--- x`` and must not be taken for a file header); a hunk whose counts do not parse
runs while lines start with `` ``, ``+``, ``-`` or ``\\``. A pure function of the text and the
question's terms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from headroom.transforms import ccr
from headroom.transforms.base import Brief, Compressed
from headroom.transforms.retrieval import split_lines
from headroom.transforms.scan import Joined
from headroom.transforms.select import rare_term_scores

_HUNK = re.compile(r"^@@@? -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
MAX_HUNK_LINES = 80  # a longer kept hunk keeps its head and the lines around the matches
HEAD_LINES = 12
AROUND = 3
BEST_SHARE = 0.5  # hunks scoring under this share of the best are not what was asked about
MAX_KEPT_HUNKS = 12


@dataclass(frozen=True)
class Hunk:
    start: int  # index of the @@ line
    stop: int  # one past the hunk's last line
    path: str  # the file it changes ("" when no header said)


def parse(lines: list[str]) -> list[Hunk]:
    """Every hunk of a unified diff, in order (``[]`` when there is none)."""
    hunks: list[Hunk] = []
    path = ""
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if line.startswith("diff --git "):
            path = line.rsplit(" b/", 1)[-1] if " b/" in line else line[11:]
        elif line.startswith("+++ ") and not line.startswith("+++ /dev/null"):
            path = line[4:].split("\t", 1)[0].removeprefix("b/")
        match = _HUNK.match(line) if line.startswith("@@") else None
        if match is None:
            i += 1
            continue
        j = _hunk_end(lines, i + 1, match)
        hunks.append(Hunk(i, j, path))
        i = j
    return hunks


def _hunk_end(lines: list[str], i: int, match: re.Match) -> int:
    n = len(lines)
    old = int(match.group(2)) if match.group(2) is not None else 1
    new = int(match.group(4)) if match.group(4) is not None else 1
    if not match.group(0).startswith("@@@"):
        j = i
        while j < n and (old > 0 or new > 0):
            head = lines[j][:1]
            if head == " " or (head == "" and lines[j] == ""):
                old, new = old - 1, new - 1
            elif head == "-":
                old -= 1
            elif head == "+":
                new -= 1
            elif head != "\\":
                break  # counts disagree with the lines: fall back to the prefix rule below
            j += 1
        else:
            while j < n and lines[j].startswith("\\"):  # "\ No newline at end of file"
                j += 1
            return j
    j = i
    while j < n and lines[j][:1] in (" ", "+", "-", "\\") and not lines[j].startswith(("--- ", "+++ ")):
        j += 1
    return j


def _chosen(lines: list[str], hunks: list[Hunk], brief: Brief) -> dict[int, set[str]]:
    """Hunk index → the question words it holds, for the hunks the question is about."""
    terms = brief.terms
    if not terms:
        return {}
    texts = [h.path + "\n" + "\n".join(lines[h.start:h.stop]) for h in hunks]
    score, words = rare_term_scores(texts, terms, brief.limits)
    if not score:
        return {}
    best = max(score.values())
    ranked = sorted((h for h, s in score.items() if s >= BEST_SHARE * best), key=lambda h: (-score[h], h))
    return {h: words[h] for h in ranked[:MAX_KEPT_HUNKS]}


def _kept_lines(lines: list[str], hunk: Hunk, brief: Brief) -> set[int]:
    """The lines of a chosen hunk to keep: all of them, or for a long hunk its head and the
    lines around its matches."""
    if hunk.stop - hunk.start <= MAX_HUNK_LINES:
        return set(range(hunk.start, hunk.stop))
    keep = set(range(hunk.start, hunk.start + HEAD_LINES))
    # Inside the chosen hunk every question word counts, even one too common to choose hunks by
    # ("return"): the question is about this hunk, and the word says where in it.
    inner = Joined(lines[hunk.start:hunk.stop]).texts_with(brief.terms.scan_words)
    for i in sorted(inner)[: brief.limits.max_matches]:
        at = hunk.start + i
        keep.update(range(max(hunk.start, at - AROUND), min(hunk.stop, at + AROUND + 1)))
    return keep


def _note(lines: list[str], start: int, stop: int, brief: Brief) -> str:
    """The note standing for ``lines[start:stop]`` (1-based line numbers of the original)."""
    added = removed = hunks = 0
    for line in lines[start:stop]:
        head = line[:1]
        if head == "+" and not line.startswith("+++ "):
            added += 1
        elif head == "-" and not line.startswith("--- "):
            removed += 1
        elif head == "@" and _HUNK.match(line):
            hunks += 1
    first, last = brief.line(start), brief.line(stop - 1)
    where = f"line {first}" if first == last else f"lines {first}\u2013{last}"
    what = f"{hunks} hunks, " if hunks > 1 else ""
    return f"\u2026 {where} omitted: {what}+{added} \u2212{removed}"


def _dropped_headers(lines: list[str], hunks: list[Hunk], chosen: dict[int, set[str]]) -> set[int]:
    """Lines that go for a file none of whose hunks was chosen: its hunks' ``@@`` lines, and
    the ``index`` and ``--- a/…`` lines of its header (its ``diff --git`` and ``+++`` lines
    name it; mode, rename and ``/dev/null`` lines say what happened to it)."""
    files: dict[str, list[int]] = {}
    for index, hunk in enumerate(hunks):
        files.setdefault(hunk.path, []).append(index)
    drop: set[int] = set()
    for indices in files.values():
        if any(i in chosen for i in indices):
            continue
        first = hunks[indices[0]].start
        j = first - 1
        while j >= 0 and not lines[j].startswith(("diff --git ", "@@")) and first - j <= 8:
            if lines[j].startswith("index ") or (lines[j].startswith("--- a/") and lines[j + 1].startswith("+++ ")):
                drop.add(j)
            j -= 1
        drop.update(hunks[i].start for i in indices)
    return drop


def compress(text: str, brief: Brief) -> Compressed | None:
    """The diff with only the asked-about hunks' bodies, or None (small, or not a diff)."""
    if len(text) <= brief.limits.lossy_min_chars:
        return None
    lines = text.split("\n")
    hunks = parse(lines)
    if not hunks:
        return None
    keep = set(range(len(lines)))
    chosen = _chosen(lines, hunks, brief)
    for index, hunk in enumerate(hunks):
        keep.difference_update(range(hunk.start + 1, hunk.stop))
        if index in chosen:
            keep |= _kept_lines(lines, hunk, brief)
    keep -= _dropped_headers(lines, hunks, chosen)
    if text.endswith("\n"):
        keep.add(len(lines) - 1)  # the empty piece after the last newline: no line of the original
    omitted = len(lines) - len(keep)
    if omitted == 0:
        return None
    out: list[str] = []
    ranges: list[tuple[int, int]] = []  # the original's lines left out, 1-based
    i, n = 0, len(lines)
    while i < n:
        if i in keep:
            out.append(lines[i])
            i += 1
            continue
        j = i
        while j < n and j not in keep:
            j += 1
        out.append(_note(lines, i, j, brief))
        ranges.append((brief.line(i), brief.line(j - 1)))
        i = j
    total = len(split_lines(text)) + brief.line_offset
    result = "\n".join([ccr.marker(omitted, total, "lines", brief.ccr_key, ranges), *out])
    if len(result) >= len(text):
        return None
    return Compressed(result, ("diff:hunks",), omitted)
