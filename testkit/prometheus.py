"""A real Prometheus server for tests: scrape some targets, then ask it what it ingested.

Checking ``/metrics`` text by eye proves little; checking that an actual Prometheus
parsed and stored the value proves the format, the content type and the figures.
:func:`start_prometheus` writes a config, runs the ``prometheus`` binary (Debian package
``prometheus``) on a free 127.0.0.1 port with its own storage directory, and waits until
it is ready. The handle's :meth:`Prometheus.wait_for_value` polls the HTTP API until a
query gives the expected number (scrapes are periodic, so a fresh value takes up to one
scrape interval to appear).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.ports import free_port
from testkit.services import stop

REQUIRE_ENV = "HEADROOM_REQUIRE_PROMETHEUS"  # set in CI: a missing binary fails instead of skipping


def find_prometheus() -> str | None:
    return shutil.which("prometheus")


def require_prometheus() -> str:
    """The binary's path; skips the calling test without it, or fails if CI demands it."""
    binary = find_prometheus()
    if binary is None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but the prometheus binary is not installed")
        pytest.skip("prometheus is not installed (apt-get install --no-install-recommends prometheus)")
    return binary


def _config(targets: list[str], scrape_interval: str, metrics_path: str, bearer_token: str | None) -> str:
    # JSON is valid YAML, so no YAML library is needed.
    job: dict[str, Any] = {
        "job_name": "headroom",
        "metrics_path": metrics_path,
        "scrape_interval": scrape_interval,
        "scrape_timeout": scrape_interval,
        "static_configs": [{"targets": targets}],
    }
    if bearer_token:
        job["authorization"] = {"type": "Bearer", "credentials": bearer_token}
    return json.dumps({"global": {"evaluation_interval": scrape_interval}, "scrape_configs": [job]}, indent=2)


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def query(self, expr: str) -> list[dict]:
        """The ``result`` list of an instant query (each item has ``metric`` and ``value``)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {body}")
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        """The single number ``expr`` evaluates to, or ``None`` while there is no data."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise ValueError(f"{expr!r} gave {len(result)} series; wrap it in sum()")
        return float(result[0]["value"][1])

    def targets(self) -> list[dict]:
        response = httpx.get(f"{self.url}/api/v1/targets", timeout=5)
        return response.json()["data"]["activeTargets"]

    def wait_until(self, expr: str, accept: Callable[[list[dict]], bool], timeout: float = 15.0) -> list[dict]:
        """Poll ``expr`` until ``accept(result)``; on timeout, fail with what was seen."""
        deadline = time.monotonic() + timeout
        result: list[dict] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if accept(result):
                return result
            time.sleep(0.1)
        raise AssertionError(
            f"{expr!r} never satisfied the check in {timeout}s; last result {result}; "
            f"targets {[(t['scrapeUrl'], t['health'], t['lastError']) for t in self.targets()]}"
        )

    def wait_for_value(self, expr: str, expected: float, timeout: float = 15.0) -> float:
        """Poll until ``expr`` (one series) equals ``expected``; returns it."""

        def accept(result: list[dict]) -> bool:
            return len(result) == 1 and float(result[0]["value"][1]) == expected

        result = self.wait_until(expr, accept, timeout)
        return float(result[0]["value"][1])

    def stop(self) -> None:
        stop(self.process)


def start_prometheus(
    targets: list[str],
    tmp_path: Path,
    scrape_interval: str = "1s",
    *,
    metrics_path: str = "/metrics",
    bearer_token: str | None = None,
    binary: str | None = None,
    ready_timeout: float = 20.0,
) -> Prometheus:
    """Start Prometheus scraping ``targets`` (``"127.0.0.1:PORT"``) and wait until it is ready.

    Everything it writes (config, TSDB, log) stays under ``tmp_path / "prometheus"``.
    Call :meth:`Prometheus.stop` when done.
    """
    binary = binary or find_prometheus()
    if binary is None:
        raise FileNotFoundError("the prometheus binary is not installed (apt-get install prometheus)")
    home = Path(tmp_path) / "prometheus"
    (home / "data").mkdir(parents=True, exist_ok=True)
    config = home / "prometheus.yml"
    config.write_text(_config(targets, scrape_interval, metrics_path, bearer_token))
    port = free_port()
    log_path = home / "prometheus.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=home,
        )
    handle = Prometheus(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}:\n{handle.log()}")
        try:
            if httpx.get(f"{handle.url}/-/ready", timeout=0.5).status_code == 200:
                return handle
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    handle.stop()
    raise RuntimeError(f"prometheus not ready after {ready_timeout}s:\n{handle.log()}")
