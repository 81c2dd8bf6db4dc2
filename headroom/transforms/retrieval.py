"""The ``headroom_retrieve`` tool: its definition, and the answer it gives from an original.

A marker (``[headroom: 370 of 400 lines omitted; retrieve with key K]``) is only useful if
the model can act on it, and acting on it must not re-flood the context it was meant to
save. So the tool takes, besides the key, either ``lines`` ("120-245", or "120") to read
one stretch of the original, or ``query`` (text to look for) to pull one fact back: the
matching lines with their numbers and two lines of context either side, as ``grep -n -C2``
shows them. Neither gives back the whole original.

Everything here is pure and deterministic: the same original and arguments always give
the same bytes, so an answer placed in a conversation never disturbs the prompt cache on
a later turn. Whoever holds the store (``/v1/retrieve``, ``headroom mcp``) fetches the
original; this module only answers from it. Bad arguments and misses are answered in
words the model can act on, never raised.

Line numbering: lines are the original's ``\\n``-separated pieces, numbered from 1, as an
editor shows them (a final newline does not open an empty last line; a ``\\r`` before a
newline stays part of its line). Each line printed comes as ``N:text`` (asked for, or a
match) or ``N-text`` (context), so the text after the first ``:`` or ``-`` is the line
exactly.

Query matching: case-insensitive; a line matches when it holds **every word** of the query
(whitespace-separated, in any order, as substrings: ``"timeout 503"`` finds
``upstream 503 after timeout``). A phrase is therefore found wherever it occurs. When no
line holds every word, the lines holding the most of them are given instead, with a note
saying so, so a query that spans two lines (a commit's hash on one, its date on the next)
still finds both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from headroom.formats import base

# The definition lives with the formats (each declares it in its own shape, and formats may not
# import the transforms); these names stay here for everyone who reads them from this module.
TOOL_NAME = base.TOOL_NAME
TOOL_DESCRIPTION = base.TOOL_DESCRIPTION
INPUT_SCHEMA: dict[str, Any] = base.INPUT_SCHEMA

CONTEXT = 2  # lines shown either side of a match
MAX_MATCHES = 50  # matching lines shown at most; the rest are counted
MAX_LINE_CHARS = 2000  # a longer matching or context line is shown around its first hit

_RANGE_RE = re.compile(r"^\s*(\d+)\s*(?:[-–:]\s*(\d*)\s*)?$")


@dataclass(frozen=True)
class _Range:
    start: int  # 1-based, inclusive
    end: int  # 1-based, inclusive, already within the original


def split_lines(original: str) -> list[str]:
    """The original's lines as numbered here: ``\\n``-separated, no phantom last line."""
    if not original:
        return []
    pieces = original.split("\n")
    if original.endswith("\n"):
        pieces.pop()
    return pieces


def answer(original: str, lines: str | None = None, query: str | None = None) -> str:
    """What the tool returns: see the module docstring. Never raises for any input."""
    lines = lines if lines and lines.strip() else None
    query = query if query and query.strip() else None
    if lines is None and query is None:
        return original
    all_lines = split_lines(original)
    total = len(all_lines)
    if total == 0:
        return "[headroom_retrieve: the original is empty]"
    span = _Range(1, total)
    if lines is not None:
        parsed = _parse_range(lines, total)
        if isinstance(parsed, str):
            return parsed
        span = parsed
    if query is None:
        return _show_lines(all_lines, span, total)
    return _search(all_lines, span, total, query)


def _parse_range(text: str, total: int) -> _Range | str:
    """The range asked for, clipped to the original's end, or the message explaining why not."""
    found = _RANGE_RE.match(text)
    if found is None:
        return (f'[headroom_retrieve: lines must be a line number ("120") or a range ("120-245"), not {text[:80]!r}; '
                f"the original has lines 1-{total}]")
    start = int(found.group(1))
    end = start if found.group(2) is None else (int(found.group(2)) if found.group(2) else total)
    if start < 1:
        return f"[headroom_retrieve: lines are numbered from 1; the original has lines 1-{total}]"
    if end < start:
        return f"[headroom_retrieve: the range {start}-{end} ends before it starts; the original has lines 1-{total}]"
    if start > total:
        return f"[headroom_retrieve: line {start} is past the end; the original has lines 1-{total}]"
    return _Range(start, min(end, total))


def _numbered(number: int, line: str, mark: str) -> str:
    return f"{number}{mark}{line}"


def _show_lines(all_lines: list[str], span: _Range, total: int) -> str:
    head = f"[lines {span.start}-{span.end} of {total}; each as N:text]"
    if span.start == span.end:
        head = f"[line {span.start} of {total}; as N:text]"
    body = [_numbered(n, all_lines[n - 1], ":") for n in range(span.start, span.end + 1)]
    return "\n".join([head, *body])


def _words(query: str) -> list[str]:
    seen: list[str] = []
    for word in query.casefold().split():
        if word not in seen:
            seen.append(word)
    return seen


def _clip(line: str, words: list[str]) -> str:
    """A very long line, shortened to a window around its first hit (marked with …)."""
    if len(line) <= MAX_LINE_CHARS:
        return line
    folded = line.casefold()
    hits = [folded.find(word) for word in words if word in folded]
    first = min(hits) if hits else 0
    start = max(0, first - MAX_LINE_CHARS // 2)
    end = min(len(line), start + MAX_LINE_CHARS)
    return f"{'…' if start else ''}{line[start:end]}{'…' if end < len(line) else ''} [line has {len(line)} characters]"


def _search(all_lines: list[str], span: _Range, total: int, query: str) -> str:
    words = _words(query)
    numbers = range(span.start, span.end + 1)
    counts = {n: sum(word in all_lines[n - 1].casefold() for word in words) for n in numbers}
    matched = [n for n in numbers if counts[n] == len(words)]
    shown_query = query.strip()[:200]
    where = f"lines {span.start}-{span.end}" if (span.start, span.end) != (1, total) else f"{total} lines"
    note = ""
    if not matched:
        best = max(counts.values(), default=0)
        if best == 0:
            return (f"[headroom_retrieve: no line of the original ({where}) contains {shown_query!r} "
                    "(case-insensitive); try fewer or other words, or ask for lines]")
        matched = [n for n in numbers if counts[n] == best]
        note = f" no line holds every word; these hold {best} of {len(words)}."
    hidden = max(0, len(matched) - MAX_MATCHES)
    matched = matched[:MAX_MATCHES]
    shown_as = "first " if hidden else ""
    head = (f"[{len(matched) + hidden} line(s) of {where} match {shown_query!r} (case-insensitive);{note} "
            f"{shown_as}{len(matched)} shown as N:text, context as N-text]")
    body: list[str] = []
    wanted = set(matched)
    last = 0
    for n in matched:
        low, high = max(span.start, n - CONTEXT), min(span.end, n + CONTEXT)
        if last and low > last + 1:
            body.append("--")
        for m in range(max(low, last + 1), high + 1):
            body.append(_numbered(m, _clip(all_lines[m - 1], words), ":" if m in wanted else "-"))
        last = max(last, high)
    if hidden:
        body.append(f"[{hidden} more matching line(s) not shown: narrow the query, or ask for lines after "
                    f"{matched[-1]}]")
    return "\n".join([head, *body])
