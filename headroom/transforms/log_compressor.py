"""Logs, build and test output: keep what explains the outcome, collapse the rest.

Always (lossless for a reader): ANSI colour codes and carriage-return progress redraws are
resolved to what a terminal would show, trailing spaces go, runs of identical lines become
one line with a count (``… ×12``), and repeated stack frames are folded (:mod:`frames`:
recursion cycles to one pass and a count, a trace logged again to its first and last frame).

Lossy, only for output still longer than ``lossy_min_chars``: keep the head and tail (the
command and its summary), every error/warning line with a little context (of an error logged
over and over, its first two and its last occurrence), whole stack traces and pytest failure
sections, and every line with a selective question term (with the whole record it belongs to, where
the output is made of records: :mod:`records`). Each run of
dropped lines becomes one note with its size, the lines it stands for in the original (numbered
before the folds, so a retrieval can ask for them) and its most common line shape, and a CCR
marker on the first line gives the retrieval key.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter

from headroom.transforms import ccr, frames, records
from headroom.transforms.base import Brief, Compressed
from headroom.transforms.retrieval import split_lines
from headroom.transforms.scan import Joined
from headroom.transforms.select import ERROR_WORDS, gaps, term_hits

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
# Python (an exception group's boxes: "  + Exception Group Traceback", "    | Traceback"), Go, .NET, Java
_TRACE_START = re.compile(
    r"^[\s+|]*(?:(?:Exception Group )?Traceback \(most recent call last\)|panic:|fatal error:|goroutine \d+ \["
    r"|Stack overflow\.|Unhandled exception\. |Exception in thread \")"
)
# Inside a Go trace the function lines are not indented (only their file:line lines are).
_GO_TRACE_LINE = re.compile(r"^(?:goroutine \d+ \[|created by |[\w./*()\[\]\-]+\(.*\)$|\[\u2026 \d+ more goroutines)")
_TRACE_LINE = re.compile(
    r"^\s+(?:at |File \"|\.\.\. \d+ more|Caused by|/\S+\.go:\d+|\^+$|\[\u2026 |\[Previous line repeated)"
)
_SECTION = re.compile(r"^=+ ?(FAILURES|ERRORS|short test summary info) ?=+$")
_ANY_SECTION = re.compile(r"^=+ .* =+$")
_MAX_SECTION = 400
_TRACE_WORDS = (("traceback (most recent call last)", ""), ("panic:", ""), ("goroutine ", ""), ("fatal error:", ""),
                ("stack overflow.", ""), ("unhandled exception. ", ""), ("exception in thread \"", ""))
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
    return dedupe_spans(lines)[0]


def dedupe_spans(lines: list[str]) -> tuple[list[str], list[int]]:
    """:func:`dedupe`, and how many input lines each output line stands for."""
    out: list[str] = []
    spans: list[int] = []
    i, n = 0, len(lines)
    while i < n:
        j = i + 1
        while j < n and lines[j] == lines[i]:
            j += 1
        run = j - i
        if run >= 3 and lines[i]:
            out.append(f"{lines[i]} \u2026 \u00d7{run}")
            spans.append(run)
        else:
            out.extend(lines[i:j])
            spans.extend([1] * run)
        i = j
    return out, spans


def _origins(spans: list[int]) -> list[int]:
    """Where each line starts among the lines it was folded from (and, last, their count)."""
    out = [0]
    for span in spans:
        out.append(out[-1] + span)
    return out


def original_lines(cleaned: list[str], deduped: list[str], dedupe_spans: list[int], folded: list[str]) -> list[int]:
    """The original line index where each folded line starts, and last the original line count:
    a gap note can then name the lines a retrieval asks for, though dedupe and the trace folds
    changed the numbering. Falls back to the folded numbering if the spans do not add up (an
    input line that looked like a fold note)."""
    by_dedupe = _origins(dedupe_spans)
    by_fold = _origins(frames.spans(folded))
    if by_fold[-1] != len(deduped) or by_dedupe[-1] != len(cleaned):
        return list(range(len(folded) + 1))
    return [by_dedupe[f] for f in by_fold]


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
            while j < n and j - i < _MAX_SECTION and (not lines[j] or lines[j][0].isspace()
                                                      or lines[j].startswith(_TRACE_CONT)
                                                      or _GO_TRACE_LINE.match(lines[j])):
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


def _gap_note(lines: list[str], errors: list[int], first: int, last: int) -> str:
    """The note standing for omitted ``lines``, which were lines ``first`` to ``last`` of the
    original (1-based, so a retrieval can ask for them); ``errors``: the error lines among
    them (indices into ``lines``), repeats of errors kept elsewhere, said first with one of them."""
    where = f"line {first}" if first == last else f"lines {first}\u2013{last}"
    head = f"\u2026 {where} omitted"
    if errors:
        sample = lines[errors[0]] if len(lines[errors[0]]) <= 120 else lines[errors[0]][:117] + "..."
        return f"{head}, {len(errors)} of them errors or warnings (like: {sample})"
    if len(lines) < 20:
        return head
    sample_lines = lines[:40]
    shapes = Counter(_shape(line) for line in sample_lines)
    shape, like = shapes.most_common(1)[0]
    if like < 2:
        return head
    approx = "~" if len(lines) > len(sample_lines) else ""
    like = round(like * len(lines) / len(sample_lines))
    sample = next(line for line in sample_lines if _shape(line) == shape)
    if len(sample) > 120:
        sample = sample[:117] + "..."
    return f"{head} ({approx}{like} like: {sample})"


def compress(text: str, brief: Brief) -> Compressed | None:
    cleaned = clean(text).split("\n")
    deduped, runs = dedupe_spans(cleaned)
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
        record_starts = records.starts(lines)
        if record_starts:
            keep |= records.matching(lines, record_starts, brief.terms, lim)
        else:
            keep.update(term_hits(lines, brief.terms, lim))
        kept = sorted(keep)
        holes = gaps(kept, n)
        if holes:
            origin = original_lines(cleaned, deduped, runs, lines)
            omitted = 0
            ranges: list[tuple[int, int]] = []  # the original's lines left out, 1-based
            out: list[str] = []
            last = 0
            for start, stop in holes:
                out.extend(lines[last:start])
                inside = errors[bisect_left(errors, start):bisect_left(errors, stop)]
                first_line, last_line = brief.line(origin[start]), brief.line(origin[stop] - 1)
                note = _gap_note(lines[start:stop], [i - start for i in inside], first_line, last_line)
                if sum(len(line) + 1 for line in lines[start:stop]) <= len(note) + 1:
                    out.extend(lines[start:stop])  # the lines cost no more than their note
                else:
                    out.append(note)
                    omitted += origin[stop] - origin[start]
                    ranges.append((first_line, last_line))
                last = stop
            out.extend(lines[last:])
            total = len(split_lines(text)) + brief.line_offset
            lossy = ccr.marker(omitted, total, "lines", brief.ccr_key, ranges) + "\n" + "\n".join(out)
            if omitted and len(lossy) < len(body):  # short gaps' notes can outweigh what they stand for
                return Compressed(lossy, (*transforms, "log:lossy"), omitted)
    if len(body) > len(text) * (1 - MIN_SAVING) or body == text:  # (== : an empty block)
        return None
    return Compressed(body, tuple(transforms))
