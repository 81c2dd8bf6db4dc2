"""Metrics: every worker's counts add up in any worker's scrape, dead workers included."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from headroom.observability import metrics
from headroom.observability.labels import OTHER, BoundedLabel, upstream_error_kind
from tests.observability import workers
from tests.observability.workers import outcome

ROOT = Path(__file__).resolve().parents[2]


def total(body: bytes, sample: str, **labels: str) -> float:
    """Sum of every ``sample`` series whose labels include ``labels``."""
    found = 0.0
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                found += s.value
    return found


def label_values(body: bytes, sample: str, label: str) -> set[str]:
    return {
        s.labels.get(label)
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == sample
    }


def run_all(spawn, *jobs) -> None:
    processes = [spawn(target, *args) for target, *args in jobs]
    for process in processes:
        process.join(30)
        assert process.exitcode == 0


def test_every_workers_counts_are_summed(metrics_dir, spawn):
    run_all(spawn, (workers.observe_many, 7), (workers.observe_many, 11), (workers.observe_many, 22))

    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    assert len(list(Path(metrics_dir).glob("counter_*.db"))) == 3
    assert total(body, "headroom_requests_total") == 40
    assert total(body, "headroom_requests_total", provider="anthropic", model="claude-sonnet-4-5", status="200") == 40
    assert total(body, "headroom_tokens_before_total") == 40 * 1000
    assert total(body, "headroom_tokens_after_total") == 40 * 600
    assert total(body, "headroom_tokens_saved_total") == 40 * 400
    assert total(body, "headroom_tokens_input_total") == 40 * 600
    assert total(body, "headroom_tokens_output_total") == 40 * 40
    assert total(body, "headroom_prompt_cache_read_tokens_total") == 40 * 100
    assert total(body, "headroom_prompt_cache_write_tokens_total") == 40 * 20
    assert total(body, "headroom_cost_usd_total") == pytest.approx(40 * 0.0025)
    assert total(body, "headroom_cache_misses_total") == 40
    assert total(body, "headroom_cache_hits_total") == 0
    assert total(body, "headroom_latency_ms_sum") == 40 * 120.0
    assert total(body, "headroom_latency_ms_count") == 40
    assert total(body, "headroom_latency_ms_bucket", le="250.0") == 40
    assert total(body, "headroom_latency_ms_bucket", le="100.0") == 0
    assert total(body, "headroom_overhead_ms_sum") == 40 * 1.5
    assert total(body, "headroom_ttfb_ms_count") == 40


def test_a_killed_worker_still_counts_and_its_replacement_adds_on(metrics_dir, spawn):
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    doomed = spawn(workers.observe_then_wait, 5, ready, stop)
    assert ready.wait(30)
    doomed.kill()  # SIGKILL: no chance to flush or clean up
    doomed.join(5)
    metrics.mark_worker_dead(doomed.pid)

    run_all(spawn, (workers.observe_many, 3))
    body, _ = metrics.render()
    assert total(body, "headroom_requests_total") == 8
    assert total(body, "headroom_latency_ms_count") == 8


def test_budget_remaining_is_the_latest_reading_even_after_its_worker_died(metrics_dir, spawn):
    run_all(spawn, (workers.set_budget, 10.0))
    run_all(spawn, (workers.set_budget, 7.5))
    body, _ = metrics.render()
    assert total(body, "headroom_budget_remaining_usd") == 7.5
    assert label_values(body, "headroom_budget_remaining_usd", "pid") == {None}  # one series, not one per pid


def test_prepare_wipes_an_earlier_runs_files(metrics_dir, spawn):
    run_all(spawn, (workers.observe_many, 4))
    assert metrics.prepare_multiprocess_dir(metrics_dir) == metrics_dir
    body, _ = metrics.render()
    assert total(body, "headroom_requests_total") == 0


def test_prepare_without_a_path_makes_a_private_directory(monkeypatch):
    monkeypatch.delenv(metrics.ENV_VAR, raising=False)
    path = metrics.prepare_multiprocess_dir()
    try:
        assert os.environ[metrics.ENV_VAR] == path
        assert os.stat(path).st_mode & 0o777 == 0o700
    finally:
        os.rmdir(path)
        monkeypatch.undo()
        metrics.sync_value_class()


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={**{k: v for k, v in os.environ.items() if k != metrics.ENV_VAR}, **env},
    )


def test_importing_the_module_does_not_import_prometheus_client():
    result = _python("import sys, headroom.observability.metrics; print('prometheus_client' in sys.modules)")
    assert result.stdout.strip() == "False", result.stderr


def test_works_when_prometheus_client_was_imported_before_the_directory_was_set(tmp_path):
    code = (
        "import prometheus_client, sys\n"
        "from headroom.observability import metrics\n"
        "from tests.observability.workers import outcome\n"
        f"metrics.prepare_multiprocess_dir({str(tmp_path)!r})\n"
        "metrics.observe(outcome())\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.glob("counter_*.db")), "the counts went to memory, not to the shared directory"


def test_single_process_mode_renders_from_memory(single_process):
    metrics.observe(outcome(status=200))
    metrics.observe(outcome(status=529, error="upstream_5xx", ttfb_ms=None, cache="hit"))
    metrics.compression_failed()
    metrics.store_unavailable()
    metrics.set_budget_remaining(3.25)
    metrics.set_budget_remaining(None)  # no budget: leaves the last reading alone

    body, _ = metrics.render()
    assert b"headroom_budget_remaining_usd" in body
    assert total(body, "headroom_requests_total") == 2
    assert total(body, "headroom_requests_total", status="529") == 1
    assert total(body, "headroom_upstream_errors_total", kind="upstream_5xx") == 1
    assert total(body, "headroom_ttfb_ms_count") == 1
    assert total(body, "headroom_cache_hits_total") == 1
    assert total(body, "headroom_compression_failed_total") == 1
    assert total(body, "headroom_store_unavailable_total") == 1
    assert total(body, "headroom_budget_remaining_usd") == 3.25


def test_no_budget_reading_means_no_budget_series(single_process):
    metrics.observe(outcome())
    metrics.set_budget_remaining(None)
    body, _ = metrics.render()
    assert b"headroom_budget_remaining_usd" not in body


def test_guard_outcomes_and_errors_are_labelled(single_process):
    m = metrics.Metrics()
    m.observe(outcome(status=200))  # admits the model label
    m.observe(outcome(status=429, limited="rpm", error="http_429"))
    m.observe(outcome(status=429, limited="budget", error="http_429"))
    m.observe(outcome(status=400, error="http_400"))  # the client's fault, not the upstream's
    m.observe(outcome(status=499, error="client_disconnected"))
    m.observe(outcome(status=200, error="stream_broken"))
    m.observe(outcome(status=200, tokens_before=10, tokens_after=12))  # grew: saved stays put
    value = m.registry.get_sample_value
    assert value("headroom_rate_limited_total", {"reason": "rpm"}) == 1
    assert value("headroom_rate_limited_total", {"reason": "budget"}) == 1
    assert value("headroom_upstream_errors_total", {"kind": "stream_broken"}) == 1
    assert value("headroom_upstream_errors_total", {"kind": "http_400"}) is None
    assert value("headroom_upstream_errors_total", {"kind": "client_disconnected"}) is None
    labels = {"provider": "anthropic", "model": "claude-sonnet-4-5"}
    assert value("headroom_tokens_saved_total", labels) == 6 * 400
    assert value("headroom_tokens_after_total", labels) == 6 * 600 + 12


def test_model_labels_are_bounded_and_only_admitted_once_the_upstream_accepts_them(single_process):
    m = metrics.Metrics()
    m.observe(outcome(model="made-up-model", status=404))
    for n in range(metrics.MODEL_LABEL_LIMIT + 20):
        m.observe(outcome(model=f"model-{n}", status=200))
    m.observe(outcome(model="model-0", status=500))  # admitted earlier: keeps its own series
    m.observe(outcome(model=None, provider="openai", path="/v1/models", status=200))

    models = {
        s.labels["model"] for family in m.registry.collect() if family.name == "headroom_requests"
        for s in family.samples
    }
    assert len(models - {OTHER, "none"}) == metrics.MODEL_LABEL_LIMIT
    assert "made-up-model" not in models and OTHER in models and "none" in models
    assert m.registry.get_sample_value(
        "headroom_requests_total", {"provider": "anthropic", "model": "model-0", "status": "500"}
    ) == 1


def test_bounded_label_rejects_odd_values():
    label = BoundedLabel(5)
    assert label('x" } evil{') == OTHER
    assert label("a" * 81) == OTHER
    assert label("gpt-4o-2024-08-06") == "gpt-4o-2024-08-06"
    assert label("claude-3-5", admit=False) == OTHER
    assert label(None) == "none"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (None, None), ("upstream_unreachable", "upstream_unreachable"), ("upstream_5xx", "upstream_5xx"),
        ("stream_timeout", "stream_timeout"), ("http_504", "http_504"), ("http_413", None),
        ("client_disconnected", None),
    ],
)
def test_upstream_error_kind(error, kind):
    assert upstream_error_kind(error) == kind


def samples_of(m: metrics.Metrics) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in m.registry.collect()
            for s in family.samples if not s.name.endswith("_created")}


def test_a_batch_counts_exactly_what_one_request_at_a_time_does(single_process):
    """The proxy closes a turn of its event loop's requests together (observe_all): every
    counter, bucket and sum comes out as observing them one by one, bucket bounds included."""
    latencies = [0.1, 5, 5.0001, 10, 250, 300000, 1e9, 42.5, 0]  # on, just over and beyond the bounds
    outcomes = [outcome(n, latency_ms=ms, overhead_ms=ms / 100, ttfb_ms=None if n % 3 else ms,
                        status=(200, 429, 529)[n % 3], limited="rpm" if n % 3 == 1 else None,
                        error={1: "http_429", 2: "upstream_5xx"}.get(n % 3), cache=("miss", "hit", None)[n % 3],
                        model=f"model-{n % 2}", prefix_changes=n % 2, cost_usd=0.001 * n)
                for n, ms in enumerate(latencies)]
    one_by_one, batched = metrics.Metrics(), metrics.Metrics()
    for o in outcomes:
        one_by_one.observe(o)
    batched.observe_all(outcomes)
    expected, got = samples_of(one_by_one), samples_of(batched)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key  # sums may differ in the last bit only
    assert batched.registry.get_sample_value("headroom_latency_ms_bucket", {"provider": "anthropic", "le": "5.0"}) == 3
    assert batched.registry.get_sample_value("headroom_latency_ms_count", {"provider": "anthropic"}) == 9


def test_observing_values_together_puts_a_nan_in_no_bucket_as_observe_does(single_process):
    m = metrics.Metrics()
    child = m.overhead.labels("anthropic")
    metrics.observe_values(child, [float("nan"), 0.3, 2e9])
    assert m.registry.get_sample_value("headroom_overhead_ms_count", {"provider": "anthropic"}) == 2
    assert m.registry.get_sample_value("headroom_overhead_ms_bucket", {"provider": "anthropic", "le": "0.5"}) == 1
