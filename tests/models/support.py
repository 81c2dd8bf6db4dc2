"""Shared by the model tests: dependency gate and the test texts (no heavy imports here)."""

from __future__ import annotations

import random


def _texts() -> dict[str, str]:
    from testkit.tiny_lingua import CORPUS

    lines = [line for line in CORPUS.splitlines() if line.strip()]
    rng = random.Random(7)
    return {
        "short": "Revenue grew by 12 percent in 2023, said Alice. Unbelievable xylophone-playing!",
        "paragraphs": "Meeting notes\n\n"
        + "\n".join(lines[:4])
        + "\n\nQ3 figures: 1,250 units at $4.99 (up 7%).\n"
        + "\n\n".join(lines[4:9]),
        # > 512 tokens: several windows, each cut at a sentence end
        "long": "\n".join(rng.choice(lines) for _ in range(110)),
        # no sentence end at all: windows are cut at the hard limit (511 tokens + [CLS])
        "no_periods": " ".join(rng.choice(lines).replace(".", ";") for _ in range(60)),
    }


TEXTS = _texts()
RATES = (0.3, 0.5, 0.7)
