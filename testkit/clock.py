"""An injectable clock for the stores' time sources: time moves only when a test says so."""

from __future__ import annotations


class FakeClock:
    """Seconds (epoch or monotonic, as the caller uses them) that move only when told to."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
