"""Soak: the mixed locust traffic for a bounded time against ``headroom proxy --workers 2``
(every feature on, state in Redis: ``load_tests/run.py``), with the RSS of every proxy process
sampled throughout; then a report of failed requests and memory growth after warm-up.

    python load_tests/soak.py                       # 10 minutes, 2 workers, 12 users
    python load_tests/soak.py --run-time 2m --out soak_out

Passes when no request failed and no process grew by more than ``--max-growth`` (10 %) from
the end of the warm-up (``--warmup``, 2 minutes; first samples are start-up, not leaks) to
the end. Writes ``rss.csv`` (every sample) and ``soak.json`` (the verdict) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402


def growth(rows: list[dict], warmup_s: float) -> dict[str, dict[str, float]]:
    """Per process: RSS at the end of the warm-up, at the end, and the growth in %.

    Each figure is the lowest sample in its window (the first fifth after the warm-up, the
    last fifth of the run): the floor a leak raises, which a sample taken in the middle of a
    burst of large requests does not move."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        series[row["process"]].append((float(row["seconds"]), float(row["rss_mb"])))
    out = {}
    for name, points in series.items():
        end = points[-1][0]
        after = [p for p in points if p[0] >= warmup_s]
        if len(after) < 2 or end <= warmup_s:
            continue
        span = end - warmup_s
        base = [mb for t, mb in after if t <= warmup_s + span / 5] or [after[0][1]]
        last = [mb for t, mb in after if t >= end - span / 5] or [after[-1][1]]
        first_mb, last_mb = min(base), min(last)
        out[name] = {"after_warmup_mb": first_mb, "end_mb": last_mb, "growth_pct": 100 * (last_mb / first_mb - 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-time", default="10m")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--warmup", type=float, default=120, help="seconds before growth is measured")
    parser.add_argument("--every", type=float, default=10, help="seconds between RSS samples")
    parser.add_argument("--max-growth", type=float, default=10.0, help="largest RSS growth allowed, %%")
    parser.add_argument("--out", type=Path, default=Path("soak_out"))
    args = parser.parse_args(argv)
    rc = run.main(["--workers", str(args.workers), "--users", str(args.users), "--spawn-rate", "4",
                   "--run-time", args.run_time, "--out", str(args.out), "--rss-every", str(args.every)])
    with open(args.out / "rss.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((args.out / "summary.json").read_text())
    grown = growth(rows, args.warmup)
    worst = max((g["growth_pct"] for g in grown.values()), default=None)
    verdict = {"requests": summary["requests"], "failures": summary["failures"], "runner_rc": rc,
               "rss": grown, "worst_growth_pct": worst,
               "ok": rc == 0 and summary["failures"] == 0 and worst is not None and worst <= args.max_growth}
    (args.out / "soak.json").write_text(json.dumps(verdict, indent=1))
    print(f"\nsoak: {summary['requests']} requests, {summary['failures']} failed")
    for name, g in sorted(grown.items()):
        print(f"  {name:22s} {g['after_warmup_mb']:7.1f} MB after warm-up -> {g['end_mb']:7.1f} MB "
              f"({g['growth_pct']:+.1f} %)")
    print("OK" if verdict["ok"] else f"FAILED (growth limit {args.max_growth} %)")
    return 0 if verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
