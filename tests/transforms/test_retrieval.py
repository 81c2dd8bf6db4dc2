"""The ``headroom_retrieve`` tool's answers (:mod:`headroom.transforms.retrieval`).

What the model gets back must be exact where it asked for lines (the text after ``N:`` is
the original's line N, byte for byte), small where it asked a question (only matching
lines and their context, bounded), and a sentence it can act on where the request cannot
be met, never an exception.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headroom.transforms import retrieval
from headroom.transforms.retrieval import CONTEXT, MAX_LINE_CHARS, MAX_MATCHES, answer, split_lines

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NUMBERED = re.compile(r"^(\d+)([:-])(.*)$", re.DOTALL)

LOG = "\n".join(f"2026-03-0{1 + i % 9} worker-{i % 7} request {i} status {200 if i % 50 else 503}"
                for i in range(1, 401)) + "\n"


def numbered(text: str) -> list[tuple[int, str, str]]:
    """``(number, mark, line)`` for every numbered line of an answer (headers and ``--`` skipped)."""
    rows = []
    for row in text.split("\n"):
        found = NUMBERED.match(row)
        if found:
            rows.append((int(found.group(1)), found.group(2), found.group(3)))
    return rows


# -- the tool definition ----------------------------------------------------------------


def test_the_tool_definition_names_key_as_required_and_lines_and_query_as_optional():
    schema = retrieval.INPUT_SCHEMA
    assert retrieval.TOOL_NAME == "headroom_retrieve"
    assert schema["required"] == ["key"]
    assert set(schema["properties"]) == {"key", "lines", "query"}
    assert all(schema["properties"][name]["type"] == "string" for name in schema["properties"])
    assert "headroom_retrieve key=" in retrieval.TOOL_DESCRIPTION  # the model links the marker to the tool


# -- lines --------------------------------------------------------------------------------


def test_neither_lines_nor_query_gives_back_the_whole_original():
    assert answer(LOG) == LOG
    assert answer(LOG, "", "  ") == LOG  # blank arguments count as not given


def test_a_range_comes_back_numbered_and_exact():
    rows = numbered(answer(LOG, "120-123"))
    assert [n for n, _, _ in rows] == [120, 121, 122, 123]
    assert [line for _, _, line in rows] == LOG.split("\n")[119:123]
    assert {mark for _, mark, _ in rows} == {":"}


def test_one_line_and_an_open_range():
    assert numbered(answer(LOG, "7")) == [(7, ":", LOG.split("\n")[6])]
    rows = numbered(answer(LOG, "398-"))
    assert [n for n, _, _ in rows] == [398, 399, 400]


def test_a_range_past_the_end_is_clipped_and_says_how_long_the_original_is():
    text = answer(LOG, "395-999")
    assert [n for n, _, _ in numbered(text)] == list(range(395, 401))
    assert "of 400" in text


def test_bad_ranges_are_explained_in_words():
    for lines, expected in (("abc", "line number"), ("0", "numbered from 1"), ("50-10", "ends before it starts"),
                            ("401", "past the end"), ("1-2-3", "line number")):
        text = answer(LOG, lines)
        assert expected in text, (lines, text)
        assert "1-400" in text
        assert numbered(text) == []


def test_a_carriage_return_stays_part_of_its_line():
    original = "alpha\r\nbeta\r\n"
    assert numbered(answer(original, "2")) == [(2, ":", "beta\r")]


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
@SETTINGS
def test_every_range_round_trips_exactly(original):
    lines = split_lines(original)
    if not lines:
        assert "empty" in answer(original, "1")
        return
    rows = numbered(answer(original, f"1-{len(lines)}"))
    assert [n for n, _, _ in rows] == list(range(1, len(lines) + 1))
    rebuilt = "\n".join(line for _, _, line in rows) + ("\n" if original.endswith("\n") else "")
    assert rebuilt == original


@given(st.text(max_size=300), st.one_of(st.none(), st.text(max_size=12)), st.one_of(st.none(), st.text(max_size=20)))
@SETTINGS
def test_never_raises_and_is_deterministic(original, lines, query):
    first = answer(original, lines, query)
    assert isinstance(first, str)
    assert answer(original, lines, query) == first


# -- query --------------------------------------------------------------------------------


def test_a_query_returns_matching_lines_with_two_lines_of_context():
    text = answer(LOG, None, "STATUS 503")  # case-insensitive, every word
    rows = numbered(text)
    matches = [n for n, mark, _ in rows if mark == ":"]
    assert matches == [n for n in range(1, 401) if n % 50 == 0]
    for n in matches:
        expected_context = {m for m in range(n - CONTEXT, n + CONTEXT + 1) if 1 <= m <= 400} - {n}
        assert expected_context <= {m for m, mark, _ in rows if mark == "-"}
    for n, _, line in rows:
        assert line == LOG.split("\n")[n - 1]
    assert "--" in text.split("\n")  # separate hunks are separated as grep separates them
    assert "8 line(s)" in text


def test_words_match_in_any_order():
    rows = numbered(answer(LOG, None, "503 worker-1"))
    assert [n for n, mark, _ in rows if mark == ":"] == [n for n in range(1, 401) if n % 50 == 0 and n % 7 == 1]


def test_a_query_within_lines_searches_only_that_range():
    rows = numbered(answer(LOG, "90-160", "status 503"))
    assert [n for n, mark, _ in rows if mark == ":"] == [100, 150]
    assert all(90 <= n <= 160 for n, _, _ in rows)


def test_no_line_with_every_word_falls_back_to_the_lines_with_the_most():
    original = "commit 3f9c0a1\nAuthor: Ada\nDate: 2026-03-14\n\nfix the cache\n"
    text = answer(original, None, "3f9c0a1 2026-03-14")
    assert "no line holds every word" in text
    assert [n for n, mark, _ in numbered(text) if mark == ":"] == [1, 3]


def test_no_match_at_all_is_said_plainly():
    text = answer(LOG, None, "kubernetes")
    assert "no line" in text and "kubernetes" in text
    assert numbered(text) == []


def test_matches_are_bounded_and_the_rest_counted():
    original = "\n".join(f"match {i}" for i in range(1, 201))
    text = answer(original, None, "match")
    marks = [n for n, mark, _ in numbered(text) if mark == ":"]
    assert marks == list(range(1, MAX_MATCHES + 1))
    assert "200 line(s)" in text
    assert f"{200 - MAX_MATCHES} more matching line(s) not shown" in text


def test_a_huge_matching_line_is_shown_around_its_hit():
    line = "x" * 50_000 + " needle " + "y" * 50_000
    text = answer(f"before\n{line}\nafter", None, "needle")
    assert len(text) < 3 * MAX_LINE_CHARS
    assert "needle" in text and "100008 characters" in text
