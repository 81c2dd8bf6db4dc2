"""The benchmark report command (load_tests/report.py): a short real run renders the report,
its charts and its data; the committed README's headline comes from the committed data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "load_tests"))

pytest.importorskip("matplotlib")
report = pytest.importorskip("report")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_a_short_run_writes_the_report_charts_data_and_readme_headline(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{report.HEADLINE_START}\nold figures\n{report.HEADLINE_END}\nrest\n")
    run = subprocess.run(
        [sys.executable, str(ROOT / "load_tests" / "report.py"), "--concurrency", "1,4", "--seconds", "0.5",
         "--requests", "40", "--rounds", "1", "--warmup", "5", "--reps", "1", "--idle-seconds", "0.5",
         "--targets", "direct,bare,headroom", "--skip-corpus", "--out", str(tmp_path / "docs"),
         "--llmlingua-json", str(tmp_path / "absent.json"), "--readme", str(readme)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    docs = tmp_path / "docs"
    data = json.loads((docs / "benchmarks.json").read_text())
    for target in ("direct", "bare", "headroom"):
        assert data["latency"][target]["p50_ms"] > 0
        assert all(cell["rps"] > 0 and cell["errors"] == 0 for cell in data["sweep"][target].values())
    assert data["startup"]["headroom"]["cold_start_s"] > 0 and data["startup"]["headroom"]["worker_mb"]
    markdown = (docs / "benchmarks.md").read_text()
    assert "![throughput against concurrency](bench-throughput.png)" in markdown
    assert "LLMLingua" in markdown and "absent.json" in markdown  # the section is skipped, and says why
    for chart in ("bench-throughput.png", "bench-latency.png", "bench-memory.png"):
        assert (docs / chart).read_bytes().startswith(PNG_MAGIC)
    text = readme.read_text()
    assert "old figures" not in text and text.endswith(f"{report.HEADLINE_END}\nrest\n")
    assert report.headline(data) in text
    measured = [v for v in data["verdicts"] if "original" not in v["target"] and "every feature" not in v["target"]]
    # every one measured (an added latency may come out below zero in a short noisy run)
    assert len(measured) == 4
    assert all(v["status"] in ("PASS", "FAIL") and isinstance(v["value"], float) for v in measured)
    assert [v["status"] for v in data["verdicts"] if "original" in v["target"]] == ["n/a", "n/a"]
    assert len(data["verdicts"]) == 7

    # Re-rendering the saved data measures nothing and gives the same report.
    again = subprocess.run([sys.executable, str(ROOT / "load_tests" / "report.py"), "--from-json",
                            str(docs / "benchmarks.json"), "--out", str(tmp_path / "again"),
                            "--llmlingua-json", str(tmp_path / "absent.json")],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "again" / "benchmarks.md").read_text() == markdown


def test_the_readme_headline_is_the_committed_runs():
    data = json.loads((ROOT / "docs" / "benchmarks.json").read_text())
    assert report.headline(data) in (ROOT / "README.md").read_text(), (
        "README.md's benchmark headline is not docs/benchmarks.json's: run `python load_tests/report.py` "
        "(or `--from-json docs/benchmarks.json`)")
