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
* **Goroutine dumps.** A Go panic with ``GOTRACEBACK=all`` prints every goroutine; workers
  parked on the same channel print the same block but for its number. The first stays, the
  others become one note listing their numbers (:func:`fold_goroutines`).

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


_GOROUTINE = re.compile(r"^goroutine (\d+) (\[.*\]:)$")
_GO_FRAME = re.compile(r"^(?:\s|created by |[\w./*()\[\]\-]+\(.*\)$)")  # file:line lines are indented


def _id_ranges(ids: list[int]) -> str:
    """``[19, 20, 21, 40]`` → ``19-21, 40`` (the order kept: a range only where ids count up by one)."""
    parts: list[str] = []
    start = prev = ids[0]
    for x in ids[1:] + [None]:
        if x is not None and x == prev + 1:
            prev = x
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if x is not None:
            start = prev = x
    return ", ".join(parts)


def fold_goroutines(lines: list[str]) -> list[str]:
    """A Go goroutine dump (a panic with ``GOTRACEBACK=all``, a ``SIGQUIT``): forty workers
    blocked on the same channel print forty blocks that differ only in their number. Blocks
    (``goroutine N [state]:`` and its frames) that follow one another, a blank line apart, and equal the first
    but for N become one note after the first: ``[… 39 more goroutines identical to goroutine 18
    but for their numbers: 19-57]``. Each id in the note stands for a blank line and the block
    with that number, in that order, so the note expands back to the very lines."""
    heads = [i for i, line in enumerate(lines) if line.startswith("goroutine ") and _GOROUTINE.match(line)]
    if len(heads) < MIN_REPEATS:
        return lines
    blocks: dict[int, tuple[int, int, tuple[str, ...]]] = {}  # head → (id, stop, the block less its id)
    for i in heads:
        j = i + 1
        while j < len(lines) and lines[j] and _GO_FRAME.match(lines[j]):
            j += 1
        match = _GOROUTINE.match(lines[i])
        assert match is not None  # heads are the lines it matched
        blocks[i] = (int(match.group(1)), j, (match.group(2), *lines[i + 1:j]))
    out: list[str] = []
    i = 0
    while i < len(lines):
        if i not in blocks:
            out.append(lines[i])
            i += 1
            continue
        first_id, stop, body = blocks[i]
        ids: list[int] = []
        nxt = stop + 1  # a twin starts right after the blank line that ends this block
        while stop < len(lines) and not lines[stop] and nxt in blocks and blocks[nxt][2] == body:
            ids.append(blocks[nxt][0])
            stop = blocks[nxt][1]
            nxt = stop + 1
        out.extend(lines[i:blocks[i][1]])
        if len(ids) >= MIN_REPEATS - 1:
            out.append(f"[\u2026 {len(ids)} more goroutines identical to goroutine {first_id} but for their numbers: "
                       f"{_id_ranges(ids)}]")
            i = stop
        else:
            i = blocks[i][1]
    return out


_NOTE = re.compile(r"^\s*\[\u2026 (?:previous (\d+) lines repeated (\d+) more times"
                   r"|(\d+) lines identical to the earlier trace\]$"
                   r"|(\d+) more goroutines identical to goroutine (\d+) )")


def spans(folded: list[str]) -> list[int]:
    """How many lines of the unfolded text each line of :func:`fold`'s output stands for (1, or a
    note's count), so that a later cut can name the *original* lines it leaves out. Read off the
    notes in one pass: a cycle's note stands for its block (the lines just before it, themselves
    possibly notes) that many more times. A line of the input that only looks like a note would
    make the sum wrong; callers check ``sum(spans(out)) == len(lines)`` before trusting it."""
    out: list[int] = []
    for i, line in enumerate(folded):
        note = _NOTE.match(line) if "[\u2026 " in line else None
        if note is None:
            out.append(1)
        elif note.group(1):
            k, more = int(note.group(1)), int(note.group(2))
            out.append(more * sum(out[-k:]) if k <= len(out) else 1)
        elif note.group(3):
            out.append(int(note.group(3)))
        else:
            head = f"goroutine {note.group(5)} ["
            h = next((j for j in range(i - 1, -1, -1) if folded[j].startswith(head)), None)
            out.append(1 if h is None else int(note.group(4)) * (2 + sum(out[h + 1:i])))
    return out


def fold(lines: list[str]) -> list[str]:
    """Goroutine dumps first (whole blocks compare equal but for their number), repeated traces
    (whole runs compare equal), then cycles inside what is left, then cycles of numbered frames."""
    return fold_numbered_cycles(fold_cycles(fold_repeated_traces(fold_goroutines(lines))))
