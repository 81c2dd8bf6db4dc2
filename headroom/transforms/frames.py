"""Stack traces and other repeated runs of lines, folded without losing what a reader needs.

Two kinds of repetition cost most of a failing program's output:

* **Cycles.** Recursion prints the same few frames again and again (Python mutual recursion,
  the 1,024 frames of a Java ``StackOverflowError`` going a → b → a). The first pass through
  the cycle stays, then ``[… previous 4 lines repeated 249 more times]``, the way Python
  itself folds a single repeated frame. The count is exact, so nothing is lost.
* **Repeated traces.** A service that fails the same way on every request logs the same
  frames each time. The first trace stays whole; a later identical run of frames keeps its
  first and last frame (where it was called from, where it failed) and says how many lines
  in between are the same as in the earlier trace. Exception lines are never folded: they
  are not frames, and they carry the message that differs.

Both are pure functions of the lines, so the same output folds to the same bytes.
"""

from __future__ import annotations

import re

MAX_PERIOD = 36  # longest cycle looked for, in lines (Python 3.11: 3-line frames, 12 functions)
MIN_REPEATS = 3  # a cycle must go round at least this often to be folded
MIN_TRACE = 6  # shorter runs of frames are not worth a note
# A frame line (Python, Java/Kotlin/Scala/JS, Go, "... 12 more"), or a fold note.
FRAME = re.compile(
    r"^\s+(?:File \"|at \S|\.\.\. \d+ (?:more|common frames omitted)|\S+\.(?:go|rs|rb|php|js|ts):\d+"
    r"|\[Previous line repeated|\[\u2026 )"
)


def _note_indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def fold_cycles(lines: list[str]) -> list[str]:
    """Blocks of 2..MAX_PERIOD lines repeated MIN_REPEATS+ times in a row → the block once
    and a note with the exact count. (Runs of one line are
    :func:`log_compressor.dedupe`'s job.)"""
    n = len(lines)
    if n < 2 * MIN_REPEATS:
        return lines
    ids: dict[str, int] = {}
    code = [ids.setdefault(line, len(ids)) for line in lines]
    if len(ids) == n:
        return lines  # no line repeats at all
    gap = [0] * n  # distance to the next occurrence of the same line (0: none)
    seen: dict[int, int] = {}
    for i in range(n - 1, -1, -1):
        j = seen.get(code[i])
        if j is not None:
            gap[i] = j - i
        seen[code[i]] = i
    out: list[str] = []
    i = 0
    while i < n:
        k = gap[i]  # candidate periods: the distances to the line's next occurrences
        while 0 < k <= MAX_PERIOD and i + MIN_REPEATS * k <= n:
            if k > 1:
                block = code[i:i + k]
                repeats = 1
                while code[i + repeats * k:i + (repeats + 1) * k] == block:
                    repeats += 1
                if repeats >= MIN_REPEATS:
                    break
            k = k + gap[i + k] if gap[i + k] else 0
        else:
            out.append(lines[i])
            i += 1
            continue
        out.extend(lines[i:i + k])
        out.append(f"{_note_indent(lines[i])}[\u2026 previous {k} lines repeated {repeats - 1} more times]")
        i += repeats * k
    return out


def _frame_runs(lines: list[str]) -> list[tuple[int, int]]:
    """(start, stop) of each run of indented lines that is mostly frames."""
    runs = []
    i, n = 0, len(lines)
    while i < n:
        if not (lines[i][:1].isspace() and FRAME.match(lines[i])):
            i += 1
            continue
        j = i
        frames = 0
        while j < n and lines[j][:1].isspace():
            frames += 1 if FRAME.match(lines[j]) else 0
            j += 1
        if j - i >= MIN_TRACE and frames * 2 >= j - i:
            runs.append((i, j))
        i = j
    return runs


def fold_repeated_traces(lines: list[str]) -> list[str]:
    """A run of frames identical to an earlier one → its first and last line and a note."""
    runs = _frame_runs(lines)
    if len(runs) < 2:
        return lines
    seen: set[tuple[str, ...]] = set()
    out: list[str] = []
    last = 0
    for start, stop in runs:
        key = tuple(lines[start:stop])
        if key not in seen:
            seen.add(key)
            continue
        out.extend(lines[last:start + 1])
        out.append(f"{_note_indent(lines[start + 1])}[\u2026 {stop - start - 2} lines identical to the earlier trace]")
        out.append(lines[stop - 1])
        last = stop
    out.extend(lines[last:])
    return out


_NUMBERED = re.compile(r"^(\s*)(\d+): ")  # a numbered frame: Rust's "  12: main::parse"


def renumber(line: str, step: int) -> str:
    """A numbered frame line with its number raised by ``step``, right-aligned in the same width."""
    match = _NUMBERED.match(line)
    if match is None:
        return line
    field = match.group(1) + match.group(2)
    return str(int(match.group(2)) + step).rjust(len(field)) + line[len(field):]


def fold_numbered_cycles(lines: list[str]) -> list[str]:
    """Recursion in a backtrace whose frames are numbered (Rust's ``RUST_BACKTRACE=1``: the
    same two lines again and again, only the frame number counting up): the block once and
    ``[… previous 2 lines repeated 23 more times, frame numbers counting up by 1]``. Only
    where every repeat is exactly the block renumbered (:func:`renumber`), so the note expands
    back to the very lines."""
    n = len(lines)
    matches = [_NUMBERED.match(line) for line in lines]
    numbered = [m is not None for m in matches]
    if sum(numbered) < 2 * MIN_REPEATS:
        return lines
    keys = [line[m.end(2):] if m else line for line, m in zip(lines, matches)]  # the line less its number
    gap = [0] * n  # distance to the next line with the same key (0: none): the candidate periods
    seen: dict[str, int] = {}
    for i in range(n - 1, -1, -1):
        j = seen.get(keys[i])
        if j is not None:
            gap[i] = j - i
        seen[keys[i]] = i
    out: list[str] = []
    i = 0
    while i < n:
        found = None
        k = gap[i] if numbered[i] else 0
        while 0 < k <= MAX_PERIOD and i + MIN_REPEATS * k <= n:
            if keys[i + 2 * k] == keys[i]:
                step = sum(numbered[i:i + k])
                repeats = 1
                while i + (repeats + 1) * k <= n and all(
                        lines[i + repeats * k + j] == renumber(lines[i + j], repeats * step) for j in range(k)):
                    repeats += 1
                if repeats >= MIN_REPEATS:
                    found = (k, step, repeats)
                    break
            k = k + gap[i + k] if gap[i + k] else 0
        if found is None:
            out.append(lines[i])
            i += 1
            continue
        k, step, repeats = found
        out.extend(lines[i:i + k])
        out.append(f"{_note_indent(lines[i])}[\u2026 previous {k} lines repeated {repeats - 1} more times, "
                   f"frame numbers counting up by {step}]")
        i += repeats * k
    return out


def fold(lines: list[str]) -> list[str]:
    """Repeated traces first (whole runs compare equal), then cycles inside what is left, then
    cycles of numbered frames."""
    return fold_numbered_cycles(fold_cycles(fold_repeated_traces(lines)))
