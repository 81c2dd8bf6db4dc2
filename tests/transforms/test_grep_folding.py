"""Grep output over a deep tree: directories written once, a line found in many files written
once with its locations, a line repeated in one file listed with all its line numbers. The
lossless tests read every (path, line, text) back out of the compressed text."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from headroom.transforms import search_compressor
from headroom.transforms.base import Brief, Limits
from headroom.transforms.terms import extract_terms

KEY = "0123456789abcdef"
ROOT = "services/shop/src/main/java/com/acme/shop"
_ENTRY = re.compile(r"^ (\d+(?:,\d+)*)([:-]) ?(.*)$")


def brief(question: str = "", **limits) -> Brief:
    return Brief(terms=extract_terms(question), ccr_key=KEY, limits=Limits(**limits))


def read_back(text: str) -> set[tuple[str, str, str]]:
    """Every (path, line number, matched text) the compressed output states."""
    found: set[tuple[str, str, str]] = set()
    common = directory = current = ""
    for line in text.split("\n"):
        if line.startswith("[same line in "):
            common = line.split("] ", 1)[1]
            continue
        if common and line.startswith(" "):
            head, _, rest = line.strip().rpartition("/: ")
            prefix = head + "/" if head else ""
            for item in rest.split("; "):
                name, _, numbers = item.rpartition(":")
                found.update((prefix + name, n, common) for n in numbers.split(","))
            continue
        if not line.startswith(" "):
            common = ""
            if line.endswith("/"):
                directory = line
            elif line.startswith("./"):
                current = line[2:]
            else:
                current = line if "/" in line else directory + line
            continue
        entry = _ENTRY.match(line)
        assert entry, line
        found.update((current, n, entry.group(3)) for n in entry.group(1).split(","))
    return found


def written(lines: list[str]) -> set[tuple[str, str, str]]:
    out = set()
    for line in lines:
        path, number, text = line.split(":", 2)
        out.add((path, number, text.strip()))
    return out


def deep_grep() -> list[str]:
    lines = []
    for pkg in ("billing", "cart", "orders"):
        for cls in ("Service", "Client", "Mapper"):
            path = f"{ROOT}/{pkg}/{pkg.title()}{cls}.java"
            lines += [f"{path}:5:import org.slf4j.LoggerFactory;",
                      f"{path}:21:    private static final Logger log = LoggerFactory.getLogger({pkg}{cls}.class);",
                      f"{path}:40:        log.warn(\"{pkg} {cls} slow\");",
                      f"{path}:90:        log.warn(\"{pkg} {cls} slow\");"]
    lines += ["pom.xml:12:<artifactId>slf4j-api</artifactId>", "src/Main.java:3:import org.slf4j.LoggerFactory;"]
    return lines


def test_deep_directories_once_and_nothing_lost():
    lines = deep_grep()
    out = search_compressor.compress("\n".join(lines), brief(lossy_min_chars=100_000))
    assert out.omitted == 0
    assert read_back(out.text) == written(lines)
    assert out.text.count(f"{ROOT}/billing/") == 2  # the heading, and the common line's locations
    assert f"\n{ROOT}/billing/\nBillingService.java\n" in out.text
    assert "\n./pom.xml\n" in out.text  # a top-level file after a heading says it is top-level


def test_a_line_in_many_files_is_written_once_with_its_count():
    lines = deep_grep()
    out = search_compressor.compress("\n".join(lines), brief(lossy_min_chars=100_000))
    assert out.text.count("import org.slf4j.LoggerFactory;") == 1
    assert "[same line in 10 files, \u00d710] import org.slf4j.LoggerFactory;" in out.text
    assert f" {ROOT}/cart/: CartService.java:5; CartClient.java:5; CartMapper.java:5" in out.text


def test_a_line_repeated_in_one_file_lists_its_line_numbers():
    lines = deep_grep()
    out = search_compressor.compress("\n".join(lines), brief(lossy_min_chars=100_000))
    assert ' 40,90: log.warn("cart Client slow");' in out.text


def test_nearby_lines_keep_their_order():
    lines = ["src/a.py-9-    }", "src/a.py:10:    raise", "src/a.py-11-    }", "src/a.py:12:    raise",
             "src/a.py-13-    }"]
    out = search_compressor.compress("\n".join(lines), brief(lossy_min_chars=100_000))
    assert out is None or " 10: raise\n 11- }\n 12: raise" in out.text


def test_shallow_paths_stay_whole():
    lines = [f"src/net/{name}.py:{i}:retry({i})" for i, name in enumerate(["a", "b", "c"] * 10)]
    out = search_compressor.compress("\n".join(lines), brief(lossy_min_chars=100_000))
    assert "\nsrc/net/a.py\n" in "\n" + out.text


def test_lossy_keeps_selective_matches_and_counts_what_it_drops():
    lines = []
    for i in range(120):
        path = f"{ROOT}/pkg{i}/Thing{i}.java"
        lines += [f"{path}:{j}:        log.debug(\"step {j} of thing {i}\");" for j in range(1, 6)]
    lines.insert(333, f"{ROOT}/pkg66/Thing66.java:77:        log.error(\"refund exceeds captured amount\");")
    out = search_compressor.compress("\n".join(lines), brief("where do we log that a refund exceeds the amount?"))
    assert 'log.error("refund exceeds captured amount");' in out.text
    m = re.match(rf"\[headroom: (\d+) of (\d+) matches omitted; headroom_retrieve key={KEY} query=\"…\"\]", out.text)
    omitted, total = int(m.group(1)), int(m.group(2))
    assert total == len(lines) and omitted == out.omitted
    assert total - omitted == len(read_back(out.text.split("\n", 1)[1]))
    # "log" is in every match: it selects nothing, so most files are dropped
    assert out.text.count(".java") < 20


def test_lossy_common_lines_keep_a_few_locations():
    lines = [f"{ROOT}/p{i}/C{i}.java:5:import org.slf4j.LoggerFactory;" for i in range(400)]
    lines += [f"{ROOT}/p{i}/C{i}.java:9:class C{i} {{}}" for i in range(400)]
    out = search_compressor.compress("\n".join(lines), brief())
    assert out.text.count("import org.slf4j.LoggerFactory;") == 1
    assert "\u2026 397 more locations omitted" in out.text


_DIRS = ["src", f"{ROOT}/cart", f"{ROOT}/cart/api", f"{ROOT}/orders", "lib/a/b/c/d", "."]
_TEXTS = ["import org.slf4j.LoggerFactory;", "log.warn(\"slow\");", "retry(3)", "x = 1  # TODO", "}"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_DIRS), st.sampled_from(["A.java", "b.py", "C.kt"]),
                          st.integers(1, 400), st.sampled_from(_TEXTS)), min_size=1, max_size=80))
def test_lossless_grep_folding_states_every_match(matches):
    """Any mix of depths, shared lines and repeats: every (path, line, text) can be read back."""
    lines = list(dict.fromkeys(f"{d}/{name}:{n}:{text}".removeprefix("./") for d, name, n, text in matches))
    out = search_compressor.compress("\n".join(lines), brief(lossy_min_chars=100_000))
    assert out is None or (out.omitted == 0 and read_back(out.text) == written(lines))
