"""Markers say which lines were left out, in the numbering the retrieval tool answers in.

For every compressor that can name lines (logs, tables, prose, diffs), with and without a
client's envelope header in front of the output: the marker's ranges are exactly the ranges
its notes stand for, its total is the original's line count as ``retrieval.split_lines``
counts it, asking ``retrieval.answer`` for a range gives back exactly the lines the note
stood for, and the kept lines with those put back are the original. The key stays findable
by the one regex every reader uses (``ccr.MARKER_KEY``, the mock model's too).
"""

from __future__ import annotations

import re

import pytest

from headroom.transforms import ccr, diff_compressor, prose, retrieval, table_compressor
from headroom.transforms.base import Brief, Limits
from headroom.transforms.router import compress_block
from headroom.transforms.terms import extract_terms
from testkit import retrieving_model
from testkit.llm_requests import bulky_json

KEY = "3f9c0a1b2c3d4e5f"
CODEX_HEADER = "Chunk ID: 1a2b3c\nWall time: 0.0123 seconds\nProcess exited with code 0\nOutput:\n"
_MARKER = re.compile(r'^\[headroom: (\d+) of (\d+) (\w+) omitted \((?:lines )?([^)]*)\); headroom_retrieve '
                     r'key=([0-9a-f]{16}) lines="(\d+(?:-\d+)?)" or query="…"\]$')
_NOTE = re.compile(r"^\u2026 (?:(\d+) rows omitted: )?lines? (\d+)(?:\u2013(\d+))?\b")


def brief(question: str = "") -> Brief:
    return Brief(terms=extract_terms(question), ccr_key=KEY, limits=Limits())


def _span(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    return int(first), int(last or first)


def read(compressed: str, head: str = "") -> tuple[re.Match, list[tuple[int, int]], list[str | tuple[int, int]]]:
    """(the marker's match, its ranges, the body: kept lines and the ranges of notes)."""
    assert compressed.startswith(head)
    marker, _, body = compressed[len(head):].partition("\n")
    found = _MARKER.match(marker)
    assert found, marker
    ranges = [_span(part) for part in found.group(4).split(", ") if not part.startswith("+")]
    pieces: list[str | tuple[int, int]] = []
    for line in body.split("\n"):
        note = _NOTE.match(line)
        if note is None:
            pieces.append(line)
        else:
            first = int(note.group(2))
            pieces.append((first, int(note.group(3) or first)))
    return found, ranges, pieces


def check(original: str, compressed: str, head: str = "") -> list[tuple[int, int]]:
    """Everything the module docstring promises, for one compressed block."""
    found, ranges, pieces = read(compressed, head)
    lines = retrieval.split_lines(original)
    noted = [piece for piece in pieces if isinstance(piece, tuple)]
    shown = found.group(4)
    more = re.search(r"\+(\d+) more$", shown)
    assert noted[:ccr.MARKER_RANGES] == ranges and len(noted) == len(ranges) + (int(more.group(1)) if more else 0)
    assert found.group(6) == (f"{ranges[0][0]}-{ranges[0][1]}" if ranges[0][0] != ranges[0][1] else str(ranges[0][0]))
    if found.group(3) == "lines":
        assert int(found.group(2)) == len(lines)  # counted as the retrieval numbers them
        assert int(found.group(1)) <= sum(last - first + 1 for first, last in noted)
    assert ccr.marker_keys(compressed) == [KEY] == [found.group(5)]
    assert retrieving_model._MARKER_KEY.findall(compressed) == [KEY]
    for first, last in noted:
        answer = retrieval.answer(original, found.group(6) if (first, last) == ranges[0] else f"{first}-{last}")
        head_line, *numbered = answer.split("\n")
        assert head_line.startswith(f"[line {first} of {len(lines)}" if first == last else
                                    f"[lines {first}-{last} of {len(lines)};")
        assert numbered == [f"{n}:{lines[n - 1]}" for n in range(first, last + 1)]
    return noted


def restore(compressed: str, original: str, head: str = "") -> list[str]:
    """The kept lines with each note replaced by the original's lines it names."""
    lines = retrieval.split_lines(original)
    out = head.split("\n")[:-1] if head else []
    for piece in read(compressed, head)[2]:
        out.extend(lines[piece[0] - 1:piece[1]] if isinstance(piece, tuple) else [piece])
    return out


def service_log(n: int = 400) -> str:
    rows = [f"2026-03-04T10:{i // 60 % 60:02d}:{i % 60:02d}Z {'ERROR payment declined' if i % 97 == 0 else 'INFO'}"
            f" worker-{i % 5} GET /api/orders/{i} 200 {10 + i % 13}ms" for i in range(1, n + 1)]
    return "\n".join(rows) + "\n"


def test_the_marker_reads_as_designed():
    assert ccr.marker(373, 400, "lines", KEY, [(13, 199), (216, 389)]) == (
        f'[headroom: 373 of 400 lines omitted (13-199, 216-389); headroom_retrieve key={KEY} lines="13-199" '
        f'or query="…"]')
    assert ccr.marker(135, 150, "rows", KEY, [(7, 141)]) == (
        f'[headroom: 135 of 150 rows omitted (lines 7-141); headroom_retrieve key={KEY} lines="7-141" or query="…"]')
    one = ccr.marker(1, 9, "lines", KEY, [(4, 4)])
    assert one.endswith(f'(4); headroom_retrieve key={KEY} lines="4" or query="…"]')
    items = ccr.marker(94, 100, "items", KEY)
    assert items == f'[headroom: 94 of 100 items omitted; headroom_retrieve key={KEY} query="…"]'
    spans = [(10 * i, 10 * i + 5) for i in range(1, 9)]
    many = ccr.marker(50, 400, "lines", KEY, spans)
    assert "(10-15, 20-25, 30-35, +5 more)" in many and many == ccr.marker(50, 400, "lines", KEY, spans)


@pytest.mark.parametrize("head", ["", CODEX_HEADER])
def test_log_markers_name_the_lines_a_retrieval_gives_back(head):
    original = head + service_log()
    _, out = compress_block(original, "exec_command", brief("which order was declined?"), {"cmd": "cat api.log"})
    assert out is not None and out.omitted > 300
    noted = check(original, out.text, head)
    assert noted[0][0] > head.count("\n") + 1  # numbered in the whole block, header included
    assert restore(out.text, original, head) == original.split("\n")  # the last newline's empty piece kept too


def test_table_markers_name_the_lines_a_retrieval_gives_back():
    original = "PID   USER   %CPU  COMMAND\n" + "\n".join(f"{1000 + i:<5} app    0.{i % 9}   worker-{i}"
                                                          for i in range(300))
    out = table_compressor.compress(original, brief())
    assert out is not None and out.omitted > 200
    check(original, out.text)
    assert restore(out.text, original) == retrieval.split_lines(original)


def test_prose_markers_name_the_lines_a_retrieval_gives_back():
    paragraphs = [f"## Section {i}\n\nThe plan number {i} costs {i * 3} dollars a month and serves teams of {i} "
                  f"people in the region {i % 7}.\n" for i in range(120)]
    paragraphs[77] += "The Team plan has a rate limit of 4,000 requests per minute.\n"
    original = "\n".join(paragraphs)
    out = prose.compress(original, brief("what is the rate limit for the team plan?"))
    assert out is not None and "4,000 requests per minute" in out.text
    noted = check(original, out.text)
    lines = retrieval.split_lines(original)
    for first, last in noted:  # what a note stands for is omitted, blank lines between included
        assert all(lines[n - 1] not in out.text.split("\n") or not lines[n - 1].strip() for n in range(first, last + 1))


def test_diff_markers_name_the_lines_a_retrieval_gives_back():
    files = []
    for f in range(30):
        files.append(f"diff --git a/src/mod{f}.py b/src/mod{f}.py\nindex 1111111..2222222 100644\n"
                     f"--- a/src/mod{f}.py\n+++ b/src/mod{f}.py\n@@ -1,12 +1,12 @@\n"
                     + "".join(f" line {i} of module {f}\n-old value {i}\n+new value {i}\n" for i in range(10)))
    original = "".join(files)  # ends with a newline: no phantom last line in the count
    out = diff_compressor.compress(original, brief("what changed in mod17?"))
    assert out is not None and out.omitted
    check(original, out.text)
    assert restore(out.text, original) == original.split("\n")


def test_compressors_that_cannot_name_lines_suggest_a_query():
    from headroom.transforms import json_compressor, search_compressor

    items = json_compressor.compress(bulky_json(), brief())
    grep = search_compressor.compress("\n".join(f"src/pkg{i}/mod.py:{j}: value = {j}" for i in range(80)
                                                for j in range(1, 6)), brief())
    for out in (items, grep):
        marker = out.text.split("\n", 1)[0]
        assert re.fullmatch(rf'\[headroom: \d+ of \d+ \w+ omitted; headroom_retrieve key={KEY} query="…"\]', marker)
