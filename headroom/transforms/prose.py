"""Long prose (web pages fetched as text, documentation, READMEs) cut down without a model.

A 60 KB documentation page is fetched to answer one question ("what is the rate limit for the
Team plan?"). The sentences that answer it carry the question's words; what orients a reader
is the page's outline and how it opens and closes. So, for prose over ``lossy_min_chars``:

* every heading (Markdown ``#``, underlined, or a short all-capitals line) stays, unless the
  headings alone are a large part of the page: then the section heading of every kept passage;
* a line (or, in a long paragraph written on one line, a sentence) holding a *selective*
  question term stays with its neighbours; a Markdown table row brings the table's header;
* the opening and the closing lines stay;
* each run of omitted lines becomes one note naming its line range in the original
  (``… lines 40–77 omitted``), and the marker on the first line gives the retrieval key.

Lines are the original's (see :func:`whitespace.normalise_lines`), so the ranges can be
asked for. No sentence is reworded: what stays is verbatim. ``--llmlingua`` replaces this with
the model (``Limits.extract_prose`` off). Plain string operations, no regex over the whole
text: under 5 ms per 100 KB.
"""

from __future__ import annotations

from bisect import bisect_right

from headroom.transforms import ccr, whitespace
from headroom.transforms.base import Brief, Compressed
from headroom.transforms.retrieval import split_lines
from headroom.transforms.select import term_hits

LONG_LINE = 400  # longer lines are paragraphs: judged sentence by sentence
OPENING_CHARS = 500
CLOSING_CHARS = 250
HEADING_SHARE = 0.1  # headings over this share of the text: only those of kept passages stay
NEIGHBOURS = 1
MIN_SAVING = 0.2  # extraction must save this much over whitespace normalisation, or it is not used


def is_heading(line: str, following: str = "") -> bool:
    """A Markdown heading, a line underlined with ``===``/``---``, or a short unindented
    all-capitals line (a man page's ``DESCRIPTION``)."""
    if not line or len(line) > 100:
        return False
    if line.startswith("#"):
        stripped = line.lstrip("#")
        return stripped[:1] == " " and len(line) - len(stripped) <= 6
    if following and len(following) >= 3 and following.strip("=-") == "" and following[:1] in "=-":
        return True
    return line[0].isalpha() and line.isupper() and len(line) <= 60


def _sentences(line: str) -> list[str]:
    """A long line cut after each ``. `` (``? ``, ``! ``) that a capital or digit follows, into
    pieces of at least 20 characters: the pieces joined with single spaces give the line back.
    (``str.split`` does the scanning: a loop over every space would cost 1 ms per 100 KB.)"""
    pieces = [line]
    for end in (". ", "? ", "! "):
        if end in line:
            pieces = [part for piece in pieces for part in _cut(piece, end)]
    return pieces


def _cut(text: str, end: str) -> list[str]:
    parts = text.split(end)
    out = [parts[0]]
    for part in parts[1:]:
        head = part[:1]
        if (head.isupper() or head.isdigit()) and len(out[-1]) >= 20:
            out[-1] += end[0]
            out.append(part)
        else:
            out[-1] += end + part
    return out


def compress(text: str, brief: Brief) -> Compressed | None:
    """The extract, or None when it would not save :data:`MIN_SAVING` over whitespace alone."""
    lines = whitespace.normalise_lines(text)
    # units: whole lines, or the sentences of a long line; unit_line maps each to its line
    units: list[str] = []
    unit_line: list[int] = []
    first_unit: list[int] = []
    fenced: set[int] = set()  # units inside ``` code blocks: a "# comment" there is no heading
    in_fence = False
    for i, line in enumerate(lines):
        first_unit.append(len(units))
        if line[:3] == "```" or (line[:1] == " " and line.lstrip()[:3] == "```"):
            in_fence = not in_fence
        elif in_fence:
            fenced.add(len(units))
        if len(line) > LONG_LINE:
            pieces = _sentences(line)
            units.extend(pieces)
            unit_line.extend([i] * len(pieces))
        else:
            units.append(line)
            unit_line.append(i)
    n_units = len(units)
    keep: set[int] = set()
    _edges(units, keep)
    headings = [u for u in range(n_units)
                if u not in fenced and is_heading(units[u], units[u + 1] if u + 1 < n_units else "")]
    heading_chars = sum(len(units[u]) for u in headings)
    hits = term_hits(units, brief.terms, brief.limits)
    for u in hits:
        keep.update(range(max(0, u - NEIGHBOURS), min(n_units, u + NEIGHBOURS + 1)))
        if units[u].startswith("|"):
            keep.update(_table_head(units, u))
    if heading_chars <= HEADING_SHARE * len(text):
        keep.update(headings)
        keep.update(u + 1 for u in headings if u + 1 < n_units and units[u + 1].strip("=-") == "")
    elif headings:
        for u in hits:
            h = bisect_right(headings, u) - 1
            if h >= 0:
                keep.add(headings[h])
    return _render(text, lines, units, unit_line, first_unit, keep, brief)


def _edges(units: list[str], keep: set[int]) -> None:
    """The opening and closing units (non-blank), up to their character budgets."""
    for order, budget in ((range(len(units)), OPENING_CHARS), (range(len(units) - 1, -1, -1), CLOSING_CHARS)):
        used = 0
        for u in order:
            if used >= budget:
                break
            keep.add(u)
            used += len(units[u])


def _table_head(units: list[str], u: int) -> range:
    """The first two rows (header and ``|---|`` rule) of the Markdown table holding unit ``u``."""
    start = u
    while start > 0 and units[start - 1].startswith("|"):
        start -= 1
    return range(start, min(start + 2, u))


def _render(text: str, lines: list[str], units: list[str], unit_line: list[int], first_unit: list[int],
            keep: set[int], brief: Brief) -> Compressed | None:
    out: list[str] = []
    gap_start = gap_last = -1  # first and last line of the run of omitted lines, -1 when none is open
    omitted = 0
    ranges: list[tuple[int, int]] = []  # the original's lines left out whole, 1-based
    n_units = len(units)
    for i, line in enumerate(lines):
        lo = first_unit[i]
        hi = first_unit[i + 1] if i + 1 < len(lines) else n_units
        kept = (1 if lo in keep else 0) if hi - lo == 1 else sum(1 for u in range(lo, hi) if u in keep)
        if not kept or not line.strip():
            if line.strip():
                omitted += 1
                gap_last = i
                if gap_start < 0:
                    gap_start = i
            elif gap_start < 0 and (not out or out[-1]):
                out.append("")
            continue
        if gap_start >= 0:
            out.append(_note(brief.line(gap_start), brief.line(gap_last)))
            ranges.append((brief.line(gap_start), brief.line(gap_last)))
            gap_start = -1
        if kept == hi - lo:
            out.append(line)
        else:
            out.append(_partial(units, lo, hi, keep))
            omitted += 1
    if gap_start >= 0:
        out.append(_note(brief.line(gap_start), brief.line(gap_last)))
        ranges.append((brief.line(gap_start), brief.line(gap_last)))
    if not omitted:
        return None
    while out and not out[-1]:
        out.pop()
    body = "\n".join(out).strip("\n")
    whitespace_only = sum(map(len, lines)) + len(lines)  # about what normalising alone would send
    if len(body) > whitespace_only * (1 - MIN_SAVING):
        return None
    marker = ccr.marker(omitted, len(split_lines(text)) + brief.line_offset, "lines", brief.ccr_key, ranges)
    return Compressed(marker + "\n" + body, ("text:extract",), omitted)


def _partial(units: list[str], lo: int, hi: int, keep: set[int]) -> str:
    """A long line with only its kept sentences, ``[…]`` where sentences were left out."""
    parts: list[str] = []
    for u in range(lo, hi):
        if u in keep:
            parts.append(units[u])
        elif not parts or parts[-1] != "[\u2026]":
            parts.append("[\u2026]")
    return " ".join(parts)


def _note(first: int, last: int) -> str:
    """The note for the original's omitted lines ``first`` to ``last`` (1-based)."""
    if first == last:
        return f"\u2026 line {first} omitted"
    return f"\u2026 lines {first}\u2013{last} omitted"
