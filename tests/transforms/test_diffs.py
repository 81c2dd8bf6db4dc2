"""Unified diffs: the file list and every hunk header stay, the hunks asked about stay whole,
the other hunk bodies become notes naming their line range (retrievable)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from headroom.transforms import diff_compressor
from headroom.transforms.base import Brief
from headroom.transforms.detect import Kind
from headroom.transforms.router import compress_block
from headroom.transforms.terms import extract_terms

KEY = "k" * 16


def _file(i: int, hunks: int = 3) -> list[str]:
    out = [f"diff --git a/src/mod{i}.py b/src/mod{i}.py", f"index {i:07x}..{i + 1:07x} 100644",
           f"--- a/src/mod{i}.py", f"+++ b/src/mod{i}.py"]
    for h in range(hunks):
        start = 10 + 40 * h
        out.append(f"@@ -{start},5 +{start},6 @@ def handler_{i}_{h}(request):")
        out += [f"     context line {i}.{h}.1", f"     context line {i}.{h}.2", f"-    -- old value {i}.{h}",
                f"--- looks like a header but is a removed line {i}.{h}",
                f"+    new_value_{i}_{h} = compute(request, retries={i * 10 + h})",
                f"+    log.info('handler {i}/{h} ready')", f"+    return new_value_{i}_{h}",
                f"     context line {i}.{h}.3"]
    return out


def _diff(files: int = 30) -> str:
    return "\n".join(line for i in range(files) for line in _file(i)) + "\n"


def _ctx(question: str) -> Brief:
    return Brief(terms=extract_terms(question), ccr_key=KEY)


def test_hunks_are_delimited_by_their_counts_not_by_header_like_lines():
    lines = _diff(3).split("\n")
    hunks = diff_compressor.parse(lines)
    assert len(hunks) == 9
    assert all(h.stop - h.start == 9 for h in hunks)  # the "--- looks like a header" line is inside
    assert [h.path for h in hunks[:4]] == ["src/mod0.py"] * 3 + ["src/mod1.py"]


def test_the_asked_hunk_stays_whole_and_every_file_is_still_listed():
    text = _diff()
    out = diff_compressor.compress(text, _ctx("What changed in src/mod17.py about new_value_17_1?"))
    assert out is not None and out.omitted and out.transforms == ("diff:hunks",)
    assert f"headroom_retrieve key={KEY} " in out.text.split("\n")[0]
    lines = text.split("\n")
    asked = next(h for h in diff_compressor.parse(lines) if "new_value_17_1 " in "\n".join(lines[h.start:h.stop]))
    assert "\n".join(lines[asked.start:asked.stop]) in out.text
    for i in range(30):
        assert f"diff --git a/src/mod{i}.py b/src/mod{i}.py" in out.text
        assert f"+++ b/src/mod{i}.py" in out.text
    assert "new_value_3_0" not in out.text  # other hunks' bodies are left out
    assert len(out.text) < len(text) / 4


def test_notes_name_the_omitted_line_range_and_the_size_of_the_change():
    text = _diff()
    lines = text.split("\n")
    out = diff_compressor.compress(text, _ctx("What changed about new_value_17_1?"))
    notes = [line for line in out.text.split("\n") if line.startswith("\u2026 ")]
    assert notes
    for note in notes:
        found = re.match(r"\u2026 lines (\d+)\u2013(\d+) omitted: (?:(\d+) hunks, )?\+(\d+) \u2212(\d+)$", note)
        assert found, note
        start, stop = int(found.group(1)), int(found.group(2))
        span = lines[start - 1:stop]
        assert int(found.group(4)) == sum(1 for x in span if x.startswith("+") and not x.startswith("+++ "))
        assert span and not any(x in out.text.split("\n") for x in span if x.startswith(("+", "-")))


def test_a_diff_from_a_shell_command_is_routed_to_the_diff_compressor():
    kind, out = compress_block(_diff(), "Bash", _ctx("new_value_5_2"), {"command": "git diff HEAD~3"})
    assert kind is Kind.DIFF and out is not None and "new_value_5_2 = compute" in out.text
    assert compress_block(_diff(), "Read", _ctx("x"), {"file_path": "a.patch"}) == (Kind.CODE, None)


def test_small_diffs_and_text_without_hunks_are_left_alone():
    assert diff_compressor.compress("\n".join(_file(1)), _ctx("x")) is None
    assert diff_compressor.compress("diff --git a/x b/x\n" * 1_000, _ctx("x")) is None


_DIFF_LINES = st.lists(st.sampled_from([
    "diff --git a/x.py b/x.py", "--- a/x.py", "+++ b/x.py", "@@ -1,3 +1,4 @@ def f():", "@@ -5 +5 @@",
    "@@@ -1,2 -1,2 +1,3 @@@", " brief", "+added line with value", "-removed", "\\ No newline at end of file",
    "", "index 1..2 100644", "-- dashes", "+++", "@@ -x +y @@",
]), max_size=400)


@settings(max_examples=150, deadline=None)
@given(lines=_DIFF_LINES, question=st.text(max_size=30), small=st.booleans())
def test_never_raises_never_grows_and_is_deterministic(lines, question, small):
    from headroom.transforms.base import Limits

    text = "\n".join(lines)
    brief = Brief(terms=extract_terms(question), ccr_key=KEY, limits=Limits(lossy_min_chars=0 if small else 6_000))
    out = diff_compressor.compress(text, brief)
    again = diff_compressor.compress(text, brief)
    assert out == again
    if out is not None:
        assert len(out.text) < len(text) and out.omitted > 0
