"""Every lossy note names the original lines it stands for (1-based, as a retrieval asks for
them), even where the log compressor folded repeated lines and traces before cutting: putting
those lines back in place of each note, and unfolding what was kept, gives the original."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from headroom.transforms import log_compressor, table_compressor
from headroom.transforms.base import Brief, Limits
from tests.transforms import trace_samples as samples
from tests.transforms.test_frames import java_log, python_recursion, unfold

KEY = "0123456789abcdef"
_RANGE = re.compile(r"^\u2026 (?:(\d+) rows omitted: )?lines? (\d+)(?:\u2013(\d+))?\b")
_DEDUPED = re.compile(r"^(.*) \u2026 \u00d7(\d+)$")


def _undedupe(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        run = _DEDUPED.match(line)
        out.extend([run.group(1)] * int(run.group(2)) if run else [line])
    return out


def restore(compressed: str, original: list[str], lines_unfold=lambda kept: kept) -> list[str]:
    """The compressed text with each note replaced by the original lines it names."""
    body = compressed.split("\n")[1:]  # the marker
    out: list[str] = []
    kept: list[str] = []
    for line in body:
        note = _RANGE.match(line)
        if note is None:
            kept.append(line)
            continue
        out.extend(lines_unfold(kept))
        kept = []
        first = int(note.group(2))
        last = int(note.group(3) or first)
        assert note.group(1) is None or last - first + 1 == int(note.group(1)), line
        out.extend(original[first - 1:last])
    return out + lines_unfold(kept)


def _log(n: int = 600) -> list[str]:
    return [f"2026-11-01T09:{i // 60 % 60:02d}:{i % 60:02d}Z INFO served GET /api/items/{i} 200" for i in range(n)]


def _log_unfold(kept: list[str]) -> list[str]:
    return _undedupe(unfold(kept))


def test_log_notes_name_original_lines_after_folds():
    lines = _log()
    lines[100:100] = ["2026-11-01T09:01:40Z WARN retrying upstream"] * 40  # deduped to one line
    lines[300:300] = python_recursion(200)  # folded to a pass and a note
    lines[700:700] = samples.GO_PANIC.rstrip("\n").split("\n")  # goroutines folded
    lines[900:900] = java_log(4)  # traces folded
    out = log_compressor.compress("\n".join(lines), Brief(ccr_key=KEY, limits=Limits()))
    assert out.omitted > 500
    assert f"of {len(lines)} lines omitted" in out.text.split("\n")[0]  # counted in original lines
    assert restore(out.text, lines, _log_unfold) == lines


def test_table_notes_name_original_lines():
    lines = ["PID   USER   %CPU  COMMAND"] + [f"{1000 + i:<5} app    0.{i % 9}   worker-{i}" for i in range(300)]
    out = table_compressor.compress("\n".join(lines), Brief(ccr_key=KEY, limits=Limits()))
    assert out is not None and out.omitted > 200
    assert restore(out.text, lines) == lines


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["INFO ok", "INFO tick", "ERROR boom", "WARN slow", "", "  at a.B(B.java:1)",
                                 'Traceback (most recent call last):', '  File "x.py", line 1, in f', "    f()",
                                 "ValueError: bad"]), min_size=0, max_size=80),
       st.integers(0, 9999))
def test_any_cut_log_names_the_lines_it_left_out(pattern, salt):
    """Whatever the log, the notes and what was kept give back the original (no note lies)."""
    lines = [f"{line} #{(i * 7 + salt) % 13}" if line.startswith("INFO") else line
             for i, line in enumerate((pattern or ["INFO ok"]) * 12)]
    text = "\n".join(lines)
    out = log_compressor.compress(text, Brief(ccr_key=KEY, limits=Limits(lossy_min_chars=200)))
    assert out is None or len(out.text) < len(text)
    if out is not None and out.omitted:
        assert restore(out.text, lines, _log_unfold) == lines
