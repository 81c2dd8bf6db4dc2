"""A small deterministic engine with Lingua2's three methods, for scheduling-logic tests only.

Each whitespace-separated word is one token; a text is cut into windows of ``window``
tokens. ``keep_probabilities`` records every batch it is given (and the thread it ran in)
and can be held on a gate, so a test decides exactly when a forward pass finishes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Window:
    input_ids: np.ndarray
    words: list[str]


@dataclass
class Plan:
    windows: list[Window]
    tokens: int


@dataclass
class Result:
    text: str
    tokens_before: int
    tokens_after: int


@dataclass
class FakeEngine:
    window: int = 512
    delay_s: float = 0.0
    gated: bool = False
    fail_next: bool = False
    batches: list[list[str]] = field(default_factory=list)  # each batch: the first word of each window
    threads: set[str] = field(default_factory=set)
    gate: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    entered: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    planned: list[str] = field(default_factory=list)  # first word of each text planned, in order
    plan_gate: threading.Event = field(default_factory=threading.Event)  # holds texts starting "hold"

    def plan(self, text: str) -> Plan:
        words = text.split()
        self.planned.append(words[0] if words else "")
        if words and words[0] == "hold" and not self.plan_gate.wait(10):
            raise RuntimeError("test plan gate never opened")
        windows = [Window(np.arange(len(chunk), dtype=np.int64), chunk)
                   for chunk in (words[i:i + self.window] for i in range(0, len(words), self.window))]
        return Plan(windows, len(words))

    def keep_probabilities(self, windows: list[Window]) -> list[np.ndarray]:
        self.threads.add(threading.current_thread().name)
        self.batches.append([window.words[0] for window in windows])
        self.entered.release()
        if self.gated and not self.gate.acquire(timeout=10):
            raise RuntimeError("test gate never opened")
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        if self.fail_next:
            self.fail_next = False
            raise ValueError("engine exploded")
        # keep every other token: a deterministic, checkable "compression"
        return [np.array([1.0 if i % 2 == 0 else 0.0 for i in range(len(w.input_ids))]) for w in windows]

    def assemble(self, plan: Plan, probs: list[np.ndarray], rate: float, force_words=()) -> Result:
        kept = [word for window, p in zip(plan.windows, probs) for word, keep in zip(window.words, p)
                if keep >= 0.5 or word in force_words]
        return Result(" ".join(kept), plan.tokens, len(kept))


def words(tag: str, n: int) -> str:
    """``n`` tokens, all starting with ``tag`` so batches show whose windows they held."""
    return " ".join(f"{tag}{i}" for i in range(n))
