"""Logs, build and test output: keep what explains the outcome, collapse the rest.

Always (lossless for a reader): ANSI colour codes and carriage-return progress redraws are
resolved to what a terminal would show, trailing spaces go, runs of identical lines become
one line with a count (``… ×12``), and repeated stack frames are folded (:mod:`frames`:
recursion cycles to one pass and a count, a trace logged again to its first and last frame).

Lossy, only for output still longer than ``lossy_min_chars``: keep the head and tail (the
command and its summary), every error/warning line with a little context (of an error logged
over and over, its first two and its last occurrence), whole stack traces and pytest failure
sections, and every line with a selective question term. Each run of
dropped lines becomes one note with its size and its most common line shape, and a CCR marker
on the first line gives the retrieval key.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter

from headroom.transforms import ccr, frames
from headroom.transforms.base import Brief, Compressed
from headroom.transforms.scan import Joined
from headroom.transforms.select import ERROR_WORDS, gaps, term_hits

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_TRACE_START = re.compile(r"^\s*(?:Traceback \(most recent call last\)|panic:|goroutine \d+ \[)")
_TRACE_LINE = re.compile(
    r"^\s+(?:at |File \"|\.\.\. \d+ more|Caused by|/\S+\.go:\d+|\^+$|\[\u2026 |\[Previous line repeated)"
)
_SECTION = re.compile(r"^=+ ?(FAILURES|ERRORS|short test summary info) ?=+$")
_ANY_SECTION = re.compile(r"^=+ .* =+$")
_MAX_SECTION = 400
_TRACE_WORDS = (("traceback (most recent call last)", ""), ("panic:", ""), ("goroutine ", ""))
_TRACE_CONT = ("During handling", "The above exception")
_SECTION_WORDS = (("failures =", ""), ("errors =", ""))
MIN_SAVING = 0.05


def clean(text: str) -> str:
    """What a terminal would show: no colour codes, progress redraws resolved, no trailing spaces."""
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        text = "\n".join(line.rsplit("\r", 1)[-1] if "\r" in line else line for line in text.split("\n"))
    return "\n".join(line.rstrip() for line in text.split("\n"))


def dedupe(lines: list[str]) -> list[str]:
    """Runs of identical lines → the line once with ``… ×N`` (N ≥ 3; shorter runs stay)."""
    out: list[str] = []
    i, n = 0, len(lines)
    while i < n:
        j = i + 1
        while j < n and lines[j] == lines[i]:
            j += 1
        run = j - i
        if run >= 3 and lines[i]:
            out.append(f"{lines[i]} \u2026 \u00d7{run}")
        else:
            out.extend(lines[i:j])
        i = j
    return out


def _error_lines(lines: list[str], joined: Joined) -> list[int]:
    """Indices of the error/warning lines, in order (a passing test named for a failure is not one)."""
    return [i for i in sorted(joined.texts_with(ERROR_WORDS)) if not _reports_success(lines[i])]


def _important(lines: list[str], brief: Brief, joined: Joined, errors: list[int]) -> set[int]:
    """Error/warning lines (``errors``) with context, stack traces and test-failure sections.

    Candidates are located with plain substring search over the joined text; the regexes
    only confirm the few candidate lines (a regex per line would dominate the cost).
    """
    keep: set[int] = set()
    nearby = brief.limits.nearby_lines
    n = len(lines)
    for index in _distinct_events(lines, errors):
        keep.update(range(max(0, index - nearby), min(n, index + nearby + 1)))
    for i in sorted(joined.texts_with(_TRACE_WORDS)):
        if _TRACE_START.match(lines[i]):
            j = i + 1
            while j < n and (not lines[j] or lines[j][0].isspace() or lines[j].startswith(_TRACE_CONT)):
                j += 1
            keep.update(range(i, min(n, j + 1)))  # through the exception line
    for i in sorted(joined.texts_with(_SECTION_WORDS)):
        section = _SECTION.match(lines[i])
        if section and section.group(1) != "short test summary info":
            j = i + 1
            while j < n and not _ANY_SECTION.match(lines[j]):
                j += 1
            if j - i <= _MAX_SECTION:
                keep.update(range(i, j))
    for i in sorted(keep):  # Java/JS/Go frames that follow a kept line
        j = i + 1
        while j < n and j not in keep and _TRACE_LINE.match(lines[j]):
            keep.add(j)
            j += 1
    return keep


# The same error logged again and again (every failed request, every retry): its first
# occurrences and its last one tell what and until when; the others only repeat them.
SAME_EVENT_FIRST, SAME_EVENT_LAST = 2, 1


def _distinct_events(lines: list[str], errors: list[int]) -> list[int]:
    """The error lines worth keeping: all of them, except that of an error whose shape
    (:func:`_shape`: ids, numbers, times blanked) recurs more than three times only the first
    two and the last are kept. The rest go with the lines around them, and the gap notes say
    how many error lines each gap holds."""
    by_shape: dict[str, list[int]] = {}
    for index in errors:
        by_shape.setdefault(_shape(lines[index]), []).append(index)
    keep: list[int] = []
    for indices in by_shape.values():
        if len(indices) > SAME_EVENT_FIRST + SAME_EVENT_LAST + 1:
            indices = indices[:SAME_EVENT_FIRST] + indices[-SAME_EVENT_LAST:]
        keep.extend(indices)
    return sorted(keep)


_SUCCESS = ("PASSED", "PASS ", " ok", "\u2713", "\u2714", "[built]", "SUCCESS", " OK")
_FAILURE = ("FAIL", "ERROR", "Error", "Exception", "error:", "FATAL", "\u2717", "\u2718")


def _reports_success(line: str) -> bool:
    """A passing test or built module whose *name* has a failure word ("test_rejects_…")."""
    return any(m in line for m in _SUCCESS) and not any(m in line for m in _FAILURE)


def _shape(line: str) -> str:
    """A line with its variable tokens (ids, paths, numbers, names) blanked out."""
    return " ".join(
        "*" if any(c.isdigit() or c in "_/:=." for c in token) else token for token in line.split()
    )


def _gap_note(lines: list[str], errors: list[int]) -> str:
    """The note standing for omitted ``lines``; ``errors``: the error lines among them (indices
    into ``lines``), repeats of errors kept elsewhere, said first with one of them."""
    count = len(lines)
    if errors:
        sample = lines[errors[0]] if len(lines[errors[0]]) <= 120 else lines[errors[0]][:117] + "..."
        return f"\u2026 {count} lines omitted, {len(errors)} of them errors or warnings (like: {sample})"
    if count < 20:
        return f"\u2026 {count} lines omitted"
    sample_lines = lines[:40]
    shapes = Counter(_shape(line) for line in sample_lines)
    shape, like = shapes.most_common(1)[0]
    if like < 2:
        return f"\u2026 {count} lines omitted"
    approx = "~" if count > len(sample_lines) else ""
    like = round(like * count / len(sample_lines))
    sample = next(line for line in sample_lines if _shape(line) == shape)
    if len(sample) > 120:
        sample = sample[:117] + "..."
    return f"\u2026 {count} lines omitted ({approx}{like} like: {sample})"


def compress(text: str, brief: Brief) -> Compressed | None:
    cleaned = clean(text)
    deduped = dedupe(cleaned.split("\n"))
    lines = frames.fold(deduped)
    transforms = ["log:collapse"] if len(lines) == len(deduped) else ["log:collapse", "log:frames"]
    body = "\n".join(lines)
    lim = brief.limits
    n = len(lines)
    if len(body) > lim.lossy_min_chars and n > lim.head_lines + lim.tail_lines + 10:
        keep = set(range(lim.head_lines)) | set(range(n - lim.tail_lines, n))
        joined = Joined(lines)
        errors = _error_lines(lines, joined)
        keep |= _important(lines, brief, joined, errors)
        keep.update(term_hits(lines, brief.terms, lim))
        kept = sorted(keep)
        holes = gaps(kept, n)
        omitted = sum(stop - start for start, stop in holes)
        if omitted:
            out: list[str] = [ccr.marker(omitted, n, "lines", brief.ccr_key)]
            last = 0
            for start, stop in holes:
                out.extend(lines[last:start])
                inside = errors[bisect_left(errors, start):bisect_left(errors, stop)]
                out.append(_gap_note(lines[start:stop], [i - start for i in inside]))
                last = stop
            out.extend(lines[last:])
            transforms.append("log:lossy")
            return Compressed("\n".join(out), tuple(transforms), omitted)
    if len(body) > len(text) * (1 - MIN_SAVING) or body == text:  # (== : an empty block)
        return None
    return Compressed(body, tuple(transforms))
