"""Records (commits, package stanzas): a line the question names brings its whole record."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from headroom.transforms import log_compressor, records
from headroom.transforms.base import Brief, Limits
from headroom.transforms.terms import extract_terms


def _git_log(n: int = 120) -> str:
    out = []
    for i in range(n):
        out += [f"commit {i:040x}", f"Author: dev{i % 7} <dev{i % 7}@example.com>",
                f"Date:   Mon Nov {1 + i % 28} 10:{i % 60:02d}:00 2026 +0000", "",
                f"    Refactor module {i} of the billing service", "",
                f" src/billing/module_{i}.py | {i + 3} ++-", f" tests/test_module_{i}.py  | 4 +++-",
                " 2 files changed, 7 insertions(+), 2 deletions(-)", ""]
    return "\n".join(out)


def test_a_commit_named_by_a_file_in_its_stat_is_kept_whole():
    text = _git_log()
    brief = Brief(terms=extract_terms("Which commit changed src/billing/module_77.py?"), ccr_key="k" * 16)
    out = log_compressor.compress(text, brief)
    assert out is not None and out.omitted
    assert f"commit {77:040x}" in out.text  # the hash, three lines above the matching line
    assert "Author: dev0 <dev0@example.com>" in out.text
    assert len(out.text) < len(text) / 5


def test_stanzas_are_records_and_common_fields_are_not_selective():
    stanzas = [f"Package: lib{name}\nStatus: install ok installed\nVersion: 1.{i}.0\nDescription: the {name} library"
               for i, name in enumerate(f"pkg{i:03d}" for i in range(200))]
    text = "\n\n".join(stanzas)
    lines = text.split("\n")
    assert len(records.starts(lines)) == 200
    brief = Brief(terms=extract_terms("Which version of libpkg123 is installed?"), ccr_key="k" * 16)
    out = log_compressor.compress(text, brief)
    assert "Package: libpkg123\nStatus: install ok installed\nVersion: 1.123.0" in out.text
    assert out.text.count("Version: ") < 30  # "version" and "installed" are in every stanza


def test_plain_logs_are_not_records():
    lines = [f"2026-11-01T09:00:{i % 60:02d}Z INFO tick {i}" for i in range(300)]
    assert records.starts(lines) == []
    assert records.starts(["INFO a", "INFO b", "INFO c", "INFO d"]) == []  # one-line "records"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="commit Pakge:ab \n[]x1", max_size=30), max_size=60), st.text(max_size=20))
def test_record_selection_never_raises_and_stays_in_range(lines, question):
    found = records.starts(lines)
    assert found == sorted(found) and all(0 <= i < len(lines) for i in found)
    kept = records.matching(lines, found, extract_terms(question), Limits())
    assert all(0 <= i < len(lines) for i in kept)
    assert kept == records.matching(lines, found, extract_terms(question), Limits())
