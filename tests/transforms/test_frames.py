"""Stack traces: recursion cycles and re-logged traces are folded without losing anything —
the tests expand the folded text back and compare it with the original."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from headroom.transforms import frames, log_compressor
from headroom.transforms.base import Brief, Limits
from headroom.transforms.detect import Kind, detect
from headroom.transforms.router import compress_block

_CYCLE = re.compile(r"^\s*\[\u2026 previous (\d+) lines repeated (\d+) more times\]$")
_NUMBERED_CYCLE = re.compile(r"^\s*\[\u2026 previous (\d+) lines repeated (\d+) more times, "
                             r"frame numbers counting up by (\d+)\]$")
_SAME = re.compile(r"^\s*\[\u2026 (\d+) lines identical to the earlier trace\]$")
_GOROUTINES = re.compile(r"^\[\u2026 (\d+) more goroutines identical to goroutine (\d+) but for their numbers: (.+)\]$")


def _ids(ranges: str) -> list[int]:
    out: list[int] = []
    for part in ranges.split(", "):
        first, _, last = part.partition("-")
        out.extend(range(int(first), int(last or first) + 1))
    return out


def unfold_goroutines(lines: list[str]) -> list[str]:
    """Each id of a goroutine note: a blank line and the named goroutine's block with that id."""
    out: list[str] = []
    for line in lines:
        note = _GOROUTINES.match(line)
        if not note:
            out.append(line)
            continue
        head = max(i for i, x in enumerate(out) if x.startswith(f"goroutine {note.group(2)} ["))
        block = out[head:]
        ids = _ids(note.group(3))
        assert len(ids) == int(note.group(1))
        for gid in ids:
            out.append("")
            out.append(f"goroutine {gid} " + block[0].split(" ", 2)[2])
            out.extend(block[1:])
    return out


def unfold(lines: list[str]) -> list[str]:
    """What the notes stand for, written out again (the reader's view of the folded text).

    Cycles were folded last, over the lines as folded so far, so they are expanded first."""
    numbered: list[str] = []
    for line in lines:
        cycle = _NUMBERED_CYCLE.match(line)
        if cycle:
            k, more, step = (int(g) for g in cycle.groups())
            block = numbered[-k:]
            numbered.extend(frames.renumber(x, r * step) for r in range(1, more + 1) for x in block)
        else:
            numbered.append(line)
    lines = numbered
    cycles: list[str] = []
    for line in lines:
        cycle = _CYCLE.match(line)
        if cycle:
            k, more = int(cycle.group(1)), int(cycle.group(2))
            cycles.extend(cycles[-k:] * more)
        else:
            cycles.append(line)
    out: list[str] = []
    for i, line in enumerate(cycles):
        same = _SAME.match(line)
        if same:  # the earlier run of frames with the same first and last frame, as far apart
            first, count, last = cycles[i - 1], int(same.group(1)), cycles[i + 1]
            start = next(j for j, x in enumerate(out) if x == first and out[j + count + 1:j + count + 2] == [last]
                         and all(y[:1].isspace() for y in out[j:j + count + 2]))
            out.extend(out[start + 1:start + 1 + count])
        else:
            out.append(line)
    return unfold_goroutines(out)


def python_recursion(cycles: int = 300) -> list[str]:
    lines = ["Traceback (most recent call last):", '  File "/srv/app/run.py", line 9, in <module>', "    main()"]
    for _ in range(cycles):
        lines += ['  File "/srv/app/tree.py", line 3, in walk', "    return visit(node)",
                  '  File "/srv/app/tree.py", line 7, in visit', "    return walk(node.child)"]
    lines += ['  File "/srv/app/tree.py", line 2, in walk', "    if node.is_leaf():",
              "RecursionError: maximum recursion depth exceeded"]
    return lines


JAVA = ["\tat com.acme.PriceCalculator.total(PriceCalculator.java:88)"] + [
    f"\tat org.framework.Layer{i}.handle(Layer{i}.java:{100 + i})" for i in range(25)
] + ["\tat java.base/java.lang.Thread.run(Thread.java:1583)"]


def java_log(requests: int = 12) -> list[str]:
    lines = []
    for r in range(requests):
        lines.append(f"2026-11-01T10:00:{r:02d}Z ERROR quote failed for cart c{r:04d}")
        lines.append('java.lang.NullPointerException: Cannot invoke "BigDecimal.add" because "discount" is null')
        lines.extend(JAVA)
        lines.append(f"2026-11-01T10:00:{r:02d}Z INFO GET /api/cart 200 12ms")
    return lines


def test_recursion_cycle_is_one_pass_and_an_exact_count():
    lines = python_recursion()
    folded = frames.fold(lines)
    assert unfold(folded) == lines
    assert len(folded) < 20
    # first frames, the innermost frame and the exception line are kept as they were
    for kept in lines[:5] + lines[-3:]:
        assert kept in folded


def test_repeated_trace_keeps_its_first_and_last_frame_and_every_exception_line():
    lines = java_log()
    folded = frames.fold(lines)
    assert unfold(folded) == lines
    assert folded.count(JAVA[0]) == 12 and folded.count(JAVA[-1]) == 12  # first and last frame, every time
    assert folded.count(JAVA[5]) == 1  # the middle only once
    for line in lines:
        if not line.startswith("\t"):
            assert line in folded  # exception and log lines are never folded


def test_different_traces_are_not_folded_together():
    lines = java_log(2)
    lines[len(lines) // 2 + 10] = "\tat org.framework.Other.handle(Other.java:1)"  # the second trace differs
    assert frames.fold(lines) == lines


def test_short_error_log_is_compressed_losslessly():
    text = "\n".join(python_recursion(120))
    assert detect(text, "Bash", {"command": "python run.py"}).kind is Kind.LOG
    _, out = compress_block(text, "Bash", Brief(), {"command": "python run.py"})
    assert out.omitted == 0 and "log:frames" in out.transforms
    assert unfold(out.text.split("\n")) == text.split("\n")


def test_folded_traces_survive_lossy_selection():
    lines = [f"2026-11-01T09:{i // 60:02d}:{i % 60:02d}Z INFO tick {i}" for i in range(600)]
    lines[300:300] = java_log(3)
    out = log_compressor.compress("\n".join(lines), Brief(ccr_key="0123456789abcdef", limits=Limits()))
    text = out.text
    assert 'because "discount" is null' in text
    assert text.count(JAVA[0]) == 3 and text.count(JAVA[-1]) == 3
    assert f"[\u2026 {len(JAVA) - 2} lines identical to the earlier trace]" in text  # kept with its trace
    assert out.omitted > 400


def test_cycles_of_other_lines_and_their_limits():
    assert frames.fold_cycles(list("abababx")) == ["a", "b", "[\u2026 previous 2 lines repeated 2 more times]", "x"]
    assert frames.fold_cycles(list("ababx")) == list("ababx")  # twice is not worth a note
    long_period = [f"line {i}" for i in range(frames.MAX_PERIOD + 1)] * 3
    assert frames.fold_cycles(long_period) == long_period


_FRAMES = ['  File "app.py", line 12, in walk', "    return walk(node.child)", "    at com.x.Q.price(Q.java:88)",
           "    at java.lang.Thread.run(Thread.java:840)", "ERROR quote failed", "Caused by: IOException",
           "", "x", "\tat a.B(B.java:1)", "  [\u2026 previous 2 lines repeated 2 more times]"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from(_FRAMES), min_size=1, max_size=5), st.integers(1, 12)),
                min_size=1, max_size=6))
def test_folding_any_run_of_repeated_lines_loses_nothing(runs):
    """Whatever lines repeat, however often, the folded text expands back to the original, and
    folding is deterministic."""
    lines = [line for block, times in runs for line in block * times]
    folded = frames.fold(lines)
    assert folded == frames.fold(list(lines))
    if not any(_CYCLE.match(line) or _SAME.match(line) for line in lines):  # notes in the input are ambiguous
        assert unfold(folded) == lines


def rust_backtrace(depth: int = 40) -> list[str]:
    out = ["thread 'main' panicked at src/main.rs:3:60:", "index out of bounds: the len is 0 but the index is 25",
           "stack backtrace:", "   0: __rustc::rust_begin_unwind",
           "             at /rustc/library/std/src/panicking.rs:689:5"]
    out += [line for n in range(1, depth) for line in (f"{n:>4}: shards::parse", "             at ./shards.rs:3:5")]
    out += [f"{depth:>4}: shards::main", "             at ./shards.rs:7:20",
            "note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace."]
    return out


def test_numbered_frames_of_a_recursion_fold_to_one_pass_and_expand_back():
    lines = rust_backtrace()
    folded = frames.fold(lines)
    assert len(folded) < 15
    assert "   1: shards::parse" in folded and "  40: shards::main" in folded
    assert any("frame numbers counting up by 1" in line for line in folded)
    assert unfold(folded) == lines
    assert frames.fold(rust_backtrace(3)) == rust_backtrace(3)  # too short to fold


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 120), st.sampled_from(["a::b", "c", "  at x.rs:1", ""])), max_size=80),
       st.integers(0, 3))
def test_any_numbered_frames_fold_losslessly(rows, indent):
    lines = [f"{' ' * indent}{n:>4}: {name}" if name and not name.startswith(" ") else name for n, name in rows]
    lines += [f"{n:>4}: rec" for n in range(95, 130)]  # crosses 99 → 100 in the same width
    folded = frames.fold(lines)
    assert folded == frames.fold(list(lines)) and len(folded) <= len(lines)
    assert unfold(folded) == lines
