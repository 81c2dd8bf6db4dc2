"""A short, bounded locust run through the real runner (``load_tests/run.py``): mock upstream
with a model-like pace, a real Redis, a two-worker proxy with every feature on, and the
three user classes of ``load_tests/locustfile.py`` with their checks (well-formed answers,
streams that end properly, byte-stable tool results from one turn to the next).

Any failed request or broken stream fails the test; so does a user class that barely ran,
or bursts that never met the rate limit or the budget. Skipped when locust is not installed,
unless ``HEADROOM_REQUIRE_LOCUST=1``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from testkit import ROOT
from testkit.services import REDIS_BIN

REQUIRE_LOCUST_ENV = "HEADROOM_REQUIRE_LOCUST"
RUN_TIME_S = 25
MIN_PER_CLASS = 5


def _require_tools() -> None:
    if importlib.util.find_spec("locust") is None:
        if os.environ.get(REQUIRE_LOCUST_ENV) == "1":
            pytest.fail(f"{REQUIRE_LOCUST_ENV}=1 but locust is not installed (pip install -e '.[test]')")
        pytest.skip("locust not installed (pip install locust, or set HEADROOM_REQUIRE_LOCUST=1 to fail)")
    if REDIS_BIN is None:
        if os.environ.get("HEADROOM_REQUIRE_REDIS"):
            pytest.fail("HEADROOM_REQUIRE_REDIS is set but redis-server is not installed")
        pytest.skip("redis-server not installed")


def test_short_locust_run_has_no_failures(tmp_path):
    _require_tools()
    out = tmp_path / "load"
    cmd = [sys.executable, str(ROOT / "load_tests" / "run.py"), "--workers", "2", "--users", "6",
           "--spawn-rate", "6", "--run-time", f"{RUN_TIME_S}s", "--out", str(out),
           "--min-per-class", str(MIN_PER_CLASS)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIME_S + 150)
    report = f"runner exited {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    summary = json.loads((out / "summary.json").read_text())

    assert proc.returncode == 0, report
    assert summary["failures"] == 0, report
    for prefix, n in summary["per_class"].items():
        assert n >= MIN_PER_CLASS, f"{prefix}: {n} requests\n{report}"
    counters = summary["counters"]
    assert counters.get("prefix_checks", 0) > 0, report  # turns really were compared
    assert counters.get("tokens_saved", 0) > 0, report  # and their tool results really were compressed
    assert counters.get("burst_429_rpm", 0) > 0, report  # the rate limit engaged
    assert counters.get("burst_429_budget", 0) > 0, report  # the budget engaged
    assert (out / "locust_stats.csv").exists()


def test_short_locust_run_with_llmlingua_has_no_failures(tmp_path, lingua_model):
    """The same scenarios with LLMLingua on (the proxy's own model server, a tiny model): prose
    tool results go through the model under load, and nothing fails or breaks prefix stability."""
    _require_tools()
    out = tmp_path / "load"
    run_s = 15
    cmd = [sys.executable, str(ROOT / "load_tests" / "run.py"), "--workers", "2", "--users", "4",
           "--spawn-rate", "4", "--run-time", f"{run_s}s", "--out", str(out), "--min-per-class", "2",
           "--llmlingua", str(lingua_model)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=run_s + 240)
    report = f"runner exited {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    summary = json.loads((out / "summary.json").read_text())
    assert proc.returncode == 0, report
    assert summary["failures"] == 0, report
    assert summary["proxy_stats"]["llmlingua_compressions"] > 0, report
    assert summary["counters"].get("prefix_checks", 0) > 0, report


def test_mock_model_pace_and_tool_result_receipt(mock):
    """The mock's model pace (control headers here; ``--ttft-ms``/``--tokens-per-s`` set the
    defaults) and the per-answer digest of the tool results it received."""
    content = "line one\nline two é"
    body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": content}]}]}
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01", "x-mock-ttft-ms": "150",
               "x-mock-tokens-per-s": "100"}
    start = time.perf_counter()
    resp = httpx.post(f"{mock.url}/v1/messages", json=body, headers=headers, timeout=10)
    elapsed = time.perf_counter() - start
    output_tokens = resp.json()["usage"]["output_tokens"]
    assert elapsed >= 0.15 + output_tokens / 100 - 0.01
    assert resp.headers["x-mock-tool-results-sha256"] == hashlib.sha256(content.encode()).hexdigest()[:16]

    start = time.perf_counter()
    with httpx.stream("POST", f"{mock.url}/v1/messages", json={**body, "stream": True},
                      headers={**headers, "x-mock-events": "40"}, timeout=10) as stream:
        first_delta = None
        for line in stream.iter_lines():
            if first_delta is None and "content_block_delta" in line:
                first_delta = time.perf_counter() - start
    total = time.perf_counter() - start
    assert first_delta is not None and first_delta >= 0.15
    assert total >= 0.15 + 0.5 * (output_tokens / 100)

    plain = httpx.post(f"{mock.url}/v1/messages", json={**body, "messages": body["messages"][:1]},
                       headers={"x-api-key": "k"}, timeout=10)
    assert plain.headers["x-mock-tool-results-sha256"] == ""


def test_soak_growth_is_measured_after_warm_up_on_the_rss_floor():
    sys.path.insert(0, str(ROOT / "load_tests"))
    import soak

    rows = [{"seconds": str(t), "process": "worker-1", "rss_mb": str(mb)}
            for t, mb in [(0, 40), (10, 90), (20, 100), (30, 101), (40, 100), (50, 104), (60, 105), (70, 160),
                          (80, 106)]]
    rows += [{"seconds": str(t), "process": "main", "rss_mb": "20"} for t in (0, 40, 80)]
    grown = soak.growth(rows, warmup_s=20)
    assert grown["worker-1"]["after_warmup_mb"] == 100  # start-up (40, 90) is not counted
    assert grown["worker-1"]["end_mb"] == 106 and round(grown["worker-1"]["growth_pct"]) == 6  # one spike is not
    assert grown["main"]["growth_pct"] == 0
