"""Each compressor on its own: what it keeps, what it drops, and how it says so."""

from __future__ import annotations

import json
import re

from headroom.transforms import (
    json_compressor,
    log_compressor,
    search_compressor,
    table_compressor,
    text_compressor,
)
from headroom.transforms.base import Brief, Limits
from headroom.transforms.detect import Kind, detect
from headroom.transforms.json_decode import decode
from headroom.transforms.terms import extract_terms

KEY = "0123456789abcdef"


def brief(question: str = "", **limits) -> Brief:
    return Brief(terms=extract_terms(question), ccr_key=KEY, limits=Limits(**limits))


def marker_counts(text: str) -> tuple[int, int]:
    m = re.search(rf"\[headroom: (\d+) of (\d+) \w+ omitted[^;\]]*; headroom_retrieve key={KEY} [^\]]*\]", text)
    assert m, text[:200]
    return int(m.group(1)), int(m.group(2))


# --- JSON -----------------------------------------------------------------------------------


def _users(n: int = 300) -> list[dict]:
    return [{"id": 1000 + i, "login": f"user{i:04d}", "status": "active", "score": 50 + i % 7, "error": None}
            for i in range(n)]


def test_json_small_documents_stay_lossless():
    users = _users(30)
    out = json_compressor.compress(json.dumps(users, indent=2), brief())
    assert out.omitted == 0 and out.transforms == ("json:table",)
    assert decode(out.text) == users


def test_json_big_arrays_keep_head_tail_anomalies_and_matches():
    users = _users()
    users[140]["status"] = "suspended"  # rare status
    users[170]["error"] = "card_declined"  # rare non-null
    users[200]["score"] = 9_999  # outlier
    users[230]["login"] = "jdoe"  # what the question asks about
    text = json.dumps({"users": users}, indent=2)
    out = json_compressor.compress(text, brief("What is the score of jdoe?"))
    kept_ids = {int(line.split(",")[0]) for line in out.text.split("\n") if line[:1].isdigit()}
    head, tail = {1000 + i for i in range(5)}, {1000 + i for i in range(297, 300)}
    assert head | tail | {1140, 1170, 1200, 1230} == kept_ids
    omitted, total = marker_counts(out.text)
    assert (omitted, total) == (300 - len(kept_ids), 300)
    assert out.omitted == omitted and "json:lossy" in out.transforms
    assert f"\u2026 {140 - 5} rows omitted" in out.text  # gaps are shown in place


def test_json_question_terms_must_be_selective():
    users = _users()
    out = json_compressor.compress(json.dumps(users), brief("which users are active?"))
    # "active" is in every row: it says nothing about which rows matter
    assert marker_counts(out.text) == (300 - 8, 300)


def test_json_a_term_common_in_one_column_is_not_selective_in_another():
    rows = [{"url": f"https://api.example.com/issues/{i}", "title": f"Bug {i}",
             "labels": ["good first issue"] if i % 10 == 0 else []} for i in range(300)]
    out = json_compressor.compress(json.dumps(rows), brief("who opened the issue?"))
    # "issue" is in every url, so the 30 rows labelled "good first issue" are not singled out
    assert marker_counts(out.text) == (300 - 8, 300)


def test_json_numbers_match_whole_numbers_only():
    users = _users()
    out = json_compressor.compress(json.dumps(users), brief("show user 1123"))
    assert "\n1123," in out.text
    assert "\n11230," not in out.text and "\n1012," not in out.text


def test_json_arrays_of_scalars_and_nested_arrays_are_trimmed_too():
    series = [100 + (i % 5) for i in range(400)]
    series[250] = 90_000
    out = json_compressor.compress(json.dumps({"latency_ms": series}), brief(lossy_min_chars=500))
    assert "90000" in out.text
    assert '"\u2026 ' in out.text  # the gap note is a string element in a plain array


def test_json_with_a_little_text_around_it():
    body = json.dumps(_users(), indent=2)
    text = "HTTP/1.1 200 OK\ncontent-type: application/json\n\n" + body + "\n\n[exit code 0]"
    found = detect(text, "Bash")
    assert found.kind is Kind.JSON and found.value == json.loads(body)
    out = json_compressor.compress(text, brief(), found.value, found.prefix, found.suffix)
    lines = out.text.split("\n")
    assert lines[1:4] == ["HTTP/1.1 200 OK", "content-type: application/json", ""]
    assert out.text.endswith("]\n\n[exit code 0]")
    mostly_text = "Some notes first.\n" * 40 + body[:3000]
    assert detect(mostly_text, "Bash").kind is not Kind.JSON


def test_json_not_worth_it_returns_none():
    assert json_compressor.compress('{"a":1,"b":[1,2,3]}', brief()) is None


# --- logs -----------------------------------------------------------------------------------


def _build_log(n: int = 600) -> list[str]:
    lines = [f"[{i:04d}] Compiling module_{i} v1.{i % 9}.0" for i in range(n)]
    lines[300:300] = [
        "Traceback (most recent call last):",
        '  File "app.py", line 3, in <module>',
        "    main()",
        "KeyError: 'price_eur'",
    ]
    lines[450] = "warning: unused variable `total_cents` in src/cart.rs:88"
    return lines


def test_log_keeps_errors_with_context_traces_head_and_tail():
    lines = _build_log()
    out = log_compressor.compress("\n".join(lines), brief())
    text = out.text
    for needed in ("Traceback (most recent call last):", '  File "app.py", line 3, in <module>',
                   "KeyError: 'price_eur'", "warning: unused variable `total_cents` in src/cart.rs:88",
                   lines[0], lines[-1], lines[298], lines[449]):
        assert needed in text, needed
    assert lines[150] not in text
    omitted, total = marker_counts(text)
    assert total == len(lines) and omitted == out.omitted > 400
    assert re.search(r"\u2026 lines \d+\u2013\d+ omitted \(~?\d+ like: \[\d+\] Compiling module_\d+ v1\.\d\.0\)", text)


def test_log_keeps_lines_with_question_terms():
    lines = _build_log()
    out = log_compressor.compress("\n".join(lines), brief("what happened to module_377?"))
    assert "[0377] Compiling module_377 v1.8.0" in out.text


def _payments_log() -> list[str]:
    lines = [f"2026-11-01T10:{i // 60:02d}:{i % 60:02d}Z INFO served GET /api/cart in {i % 90}ms" for i in range(600)]
    for k, i in enumerate(range(40, 590, 19)):  # the same error, 29 times, each with its own order and time
        lines[i] = f"2026-11-01T10:{i // 60:02d}:{i % 60:02d}Z ERROR payment failed for ord_{k:04d}: card declined"
    lines[333] = "2026-11-01T10:05:33Z ERROR disk full on /var/lib/postgres"
    return lines


def test_an_error_logged_over_and_over_keeps_its_first_two_and_last_occurrences():
    lines = _payments_log()
    repeats = [line for line in lines if "payment failed" in line]
    out = log_compressor.compress("\n".join(lines), brief())
    kept = [line for line in out.text.split("\n") if "payment failed" in line and not line.startswith("\u2026")]
    assert kept == [repeats[0], repeats[1], repeats[-1]]
    assert "ERROR disk full on /var/lib/postgres" in out.text  # a different error: always kept
    notes = re.findall(r"\u2026 lines? [\d\u2013]+ omitted, (\d+) of them errors or warnings \(like: (.*)\)", out.text)
    assert sum(int(count) for count, _ in notes) == len(repeats) - 3
    assert all("payment failed for ord_" in sample for _, sample in notes)
    omitted, total = marker_counts(out.text)
    assert total == len(lines) and omitted == out.omitted


def test_a_repeated_error_the_question_names_is_kept():
    out = log_compressor.compress("\n".join(_payments_log()), brief("why did the payment for ord_0013 fail?"))
    assert "payment failed for ord_0013: card declined" in out.text


def test_log_cleanup_is_lossless_for_a_reader():
    raw = "\x1b[32mok\x1b[0m   \n" + "same line\n" * 5 + "50%\r75%\r100% done\n" + "tail\n" * 300
    out = log_compressor.compress(raw, brief(lossy_min_chars=100_000))
    assert out.omitted == 0
    assert out.text.startswith("ok\nsame line \u2026 \u00d75\n100% done\ntail \u2026 \u00d7300")
    assert "\x1b" not in out.text and "\r" not in out.text


def test_passing_tests_with_failure_words_in_their_names_are_not_errors():
    lines = [f"tests/test_api.py::test_rejects_invalid_token_{i} PASSED [{i // 3:3d}%]" for i in range(300)]
    lines[200] = "tests/test_api.py::test_rejects_invalid_token_200 FAILED [ 66%]"
    out = log_compressor.compress("\n".join(lines), brief())
    assert lines[200] in out.text
    assert lines[100] not in out.text


# --- search ---------------------------------------------------------------------------------


def test_grep_groups_by_file_and_drops_duplicates():
    lines = [f"src/app/models.py:{i}:    x = {i}" for i in range(1, 6)]
    lines += ["src/app/views.py:7:from .models import User", "src/app/views.py:7:from .models import User"]
    lines += [f"src/app/models.py:{i}:    y" for i in range(10, 40)]
    out = search_compressor.compress("\n".join(lines), brief(lossy_min_chars=100_000))
    assert out.omitted == 0
    assert out.text.count("src/app/models.py") == 1
    assert out.text.count("from .models import User") == 1
    assert " 3: x = 3" in out.text


def test_grep_lossy_keeps_matches_for_the_question():
    lines = [f"src/m{i % 50}.py:{i}:retry(attempt)" for i in range(2000)]
    lines[1234] = "src/m34.py:1234:MAX_RETRIES = 5"
    out = search_compressor.compress("\n".join(lines), brief("where is MAX_RETRIES set?"))
    assert " 1234: MAX_RETRIES = 5" in out.text
    omitted, total = marker_counts(out.text)
    assert total == 2000 and omitted > 1500


def test_file_lists_group_by_directory():
    paths = [f"src/components/Widget{i}.tsx" for i in range(30)] + ["src/server/rateLimiter.ts"]
    out = search_compressor.compress("\n".join(paths), brief(lossy_min_chars=100_000))
    assert out.text.startswith("src/components/: Widget0.tsx, Widget1.tsx")
    assert "src/server/: rateLimiter.ts" in out.text


# --- tables and text ------------------------------------------------------------------------


def test_tables_keep_rare_statuses():
    header = "NAME              READY   STATUS             RESTARTS   AGE"
    rows = [f"web-{i:04d}          1/1     Running            0          3d" for i in range(200)]
    rows[120] = "worker-7f9c        0/1     CrashLoopBackOff   47         3d"
    out = table_compressor.compress("\n".join([header] + rows), brief())
    assert out.text.split("\n")[1] == header
    assert rows[120] in out.text and rows[60] not in out.text
    assert marker_counts(out.text)[1] == 200


def test_text_only_normalises_whitespace():
    text = "Title   \n\n\n\n\nSome   words\u00a0 here.\n  - indented   item\n```\ncode   stays\n```\n"
    out = text_compressor.compress(text * 20, brief())
    assert out.transforms == ("text:whitespace",)
    assert re.findall(r"\w+", out.text) == re.findall(r"\w+", text * 20)
    assert "Some words here." in out.text and "  - indented item" in out.text and "code   stays" in out.text


# --- detection ------------------------------------------------------------------------------


def test_detection_by_tool_name_and_content():
    code = "def f(x):\n    return x\n" * 40
    assert detect(json.dumps({"a": [1, 2]}), "Read").kind is Kind.CODE  # file reads are never touched
    assert detect(code, "Bash").kind is Kind.CODE
    assert detect(json.dumps([{"a": 1}] * 3), "mcp__github__list_issues").kind is Kind.JSON
    assert detect("\n".join(f"src/a{i}.py:{i}:hit" for i in range(20)), "Bash").kind is Kind.SEARCH
    assert detect("\n".join(f"src/dir{i}/file{i}.ts" for i in range(20)), "Glob").kind is Kind.SEARCH
    log = "\n".join(f"2025-03-14T10:00:{i:02d}Z INFO request {i} done" for i in range(40))
    assert detect(log, None).kind is Kind.LOG
    table = "\n".join(["NAME    READY   STATUS"] + [f"pod-{i}   1/1     Running" for i in range(10)])
    assert detect(table, "Bash").kind is Kind.TABLE
    assert detect("Plain prose about the API. " * 50, "WebFetch").kind is Kind.TEXT
    diff = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n-a\n+b\n"
    assert detect(diff * 5, "Bash").kind is Kind.DIFF  # a command's diff: the diff compressor
    assert detect(diff * 5, "Read").kind is Kind.CODE  # a patch file read as a file: exact
    assert detect("not json {", None).kind is Kind.TEXT


def test_a_markdown_page_with_bullets_and_code_is_prose_not_code():
    """A README fetched as a page: headings, links, ``* item`` bullets and fenced examples. Its
    bullets and lines ending in ':' read as code line by line; only its fences are code."""
    from headroom.transforms.detect import Kind, detect

    readme = "\n".join(
        ["# Example Validation", "", "[![CI](https://img.example/ci.svg)](https://ci.example/)", "",
         "## Changelog", ""]
        + [f"* Fix handling of field {i} in nested models by @dev{i} in [#{1000 + i}](https://x.example/{i})"
           for i in range(60)]
        + ["", "## Usage", "", "Install it and then:", "", "```python", "from example import Model", "",
           "class User(Model):", "    id: int", "```", ""])
    assert detect(readme, "WebFetch", {"url": "https://example.org/project"}).kind is Kind.TEXT
    source = "\n".join(["# settings", "# more settings", "import os", "", "def main():", "    return 1"] * 20)
    assert detect(source).kind is Kind.CODE
