"""The short version of ``load_tests/soak_store.py``: a worker's memory stays flat while
stored state keeps arriving.

The real CLI proxy (one worker, memory store, ``--store-max-mb 4``) gets unique ~25 KB JSON
tool outputs (one in four re-sent): ``MAX_REQUESTS``, or as many as ``SECONDS`` allow
(about 20 s on a quiet machine). Each new one leaves 7-10 KB of stored
state (memo entry, original, prefix record): bounded only by entry count, the worker grew by
that much per request without end. With the byte bound the store is full within the warm-up
(``WARMUP_REQUESTS``, which also fills the in-process text caches, bounded by characters),
and from then on the worker's RSS may only wander by ``MARGIN_MB`` (allocator noise), however
many requests follow.

On a machine too loaded to send ``MIN_REQUESTS`` after the warm-up, unbounded growth could
hide inside the margin: the test then says so and skips rather than pass for nothing.
"""

from __future__ import annotations

import sys

import pytest

from testkit import ROOT

sys.path.insert(0, str(ROOT / "load_tests"))

import soak_store

SECONDS = 60
MAX_REQUESTS = 3000
WARMUP_REQUESTS = 1000
WINDOW_S = 4.0  # each RSS figure is the floor of the samples in such a window
MARGIN_MB = 5.0
MIN_REQUESTS = 1000  # after warm-up: 8 MB or more stored if unbounded, beyond the margin


def floor(samples: list[tuple[float, float, int]], start: float, end: float) -> float:
    """The lowest RSS sampled in [start, end]: the level a leak raises, not a momentary burst."""
    return min(mb for t, mb, _ in samples if start <= t <= end)


def test_worker_rss_stays_flat_after_warmup(tmp_path):
    samples: list[tuple[float, float, int]] = []  # (seconds, RSS MiB, requests sent)
    curve = soak_store.soak(SECONDS, flags=("--store-max-mb", "4"), every=0.5, max_requests=MAX_REQUESTS,
                            workdir=tmp_path,
                            on_sample=lambda at, mb, sent: samples.append((at, mb, sent)))
    assert curve.failed == 0, curve.statuses
    report = " ".join(f"{t:.0f}s/{sent}:{mb:.0f}MB" for t, mb, sent in samples)
    warm = next(((t, sent) for t, _, sent in samples if sent >= WARMUP_REQUESTS), None)
    end, sent_at_end = samples[-1][0], samples[-1][2]
    if warm is None or end - warm[0] < 2 * WINDOW_S or sent_at_end - warm[1] < MIN_REQUESTS:
        pytest.skip(f"too few requests after warm-up to tell a leak from noise ({report})")
    base = floor(samples, warm[0], warm[0] + WINDOW_S)
    last = floor(samples, end - WINDOW_S, end)
    assert last - base <= MARGIN_MB, (f"RSS {base:.1f} -> {last:.1f} MB over {sent_at_end - warm[1]} requests "
                                      f"after warm-up ({report})")
