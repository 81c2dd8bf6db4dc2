"""``headroom report``: the command's argument types and its run (read, summarise, present)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import date
from typing import IO

from headroom.report.chart import INSTALL_HINT, draw_png, matplotlib_missing
from headroom.report.reading import read_logs
from headroom.report.render import render_json, render_table
from headroom.report.summary import DIMENSIONS, summarise


def parse_by(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in DIMENSIONS]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"expected distinct names among {','.join(DIMENSIONS)}, got {text!r}")
    return names


def parse_day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def run(paths: Sequence[str], by: Sequence[str] = DIMENSIONS, since: str | None = None, until: str | None = None,
        as_json: bool = False, png: str | None = None, out: IO[str] | None = None, jobs: int | None = None) -> int:
    """``headroom report``: 0 when done; 2 when a log cannot be read or ``--png`` lacks matplotlib."""
    out = out or sys.stdout
    if png and matplotlib_missing():
        print(f"headroom report: --png needs matplotlib, which is not installed: {INSTALL_HINT}", file=sys.stderr)
        return 2
    try:
        agg = read_logs(paths, since, until, jobs)
    except OSError as exc:
        print(f"headroom report: error: cannot read {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    report = summarise(agg, by, paths)
    out.write(render_json(report) if as_json else render_table(report))
    if png:
        draw_png(report, png)
        if not as_json:
            out.write(f"chart written to {png}\n")
    return 0
