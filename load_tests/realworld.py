"""Compression judged on real outputs of this machine's programs (see :mod:`testkit.realworld`).

``python load_tests/realworld.py`` generates every kind with both seeds, runs each question
through the pipeline with default options and prints the per-kind Markdown tables (the
README's compression section shows them). ``--seed N`` runs one seed; ``--only ps,du`` some
generators.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testkit import realworld


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, action="append", help="seed(s); default: the tuning and the check seed")
    parser.add_argument("--only", default="", help="comma-separated generators: " + ",".join(realworld.GENERATORS))
    parser.add_argument("--questions", type=int, default=4, help="questions per output")
    args = parser.parse_args()
    only = tuple(args.only.split(",")) if args.only else None
    for seed in args.seed or [realworld.TUNE_SEED, realworld.CHECK_SEED]:
        started = time.perf_counter()
        outputs = realworld.generate(seed, args.questions, only)
        trials = asyncio.run(realworld.judge(outputs))
        print(realworld.table(trials, seed))
        print(f"\n({len(outputs)} outputs, {len(trials)} questions, {time.perf_counter() - started:.1f} s)\n")


if __name__ == "__main__":
    main()
