"""Fixtures for the observability tests: a metrics directory, outcomes, spawned workers."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headroom.observability import metrics
from testkit.prometheus import require_prometheus


@pytest.fixture
def metrics_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh multiprocess directory, set in the environment only for this test."""
    monkeypatch.delenv(metrics.ENV_VAR, raising=False)  # restored (or removed) afterwards
    monkeypatch.setattr(metrics, "_metrics", None)
    yield metrics.prepare_multiprocess_dir(str(tmp_path / "metrics"))
    monkeypatch.undo()
    metrics.sync_value_class()


@pytest.fixture
def single_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No multiprocess directory: metrics live in this process's memory."""
    monkeypatch.delenv(metrics.ENV_VAR, raising=False)
    monkeypatch.setattr(metrics, "_metrics", None)
    yield
    monkeypatch.undo()
    metrics.sync_value_class()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Any]]:
    """Start a function in a fresh interpreter, as Sanic starts its workers."""
    context = multiprocessing.get_context("spawn")
    started: list[Any] = []

    def start(target: Callable[..., Any], *args: Any) -> Any:
        process = context.Process(target=target, args=args)
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.is_alive():
            process.kill()
        process.join(5)


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return require_prometheus()
