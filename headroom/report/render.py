"""A :class:`~headroom.report.summary.Report` as an aligned text table or as JSON."""

from __future__ import annotations

import json
from typing import Any

from headroom.report.summary import CACHE_SHARE_FORMULA, Report, Totals

CALLER_WIDTH = 12  # the table shows the first 12 hex digits of the key hash; --json has it whole
_HEADINGS = {"day": "day", "model": "model", "caller": "caller"}
_FIGURE_HEADINGS = ("requests", "errors", "tokens before", "tokens after", "saved", "USD spent", "USD saved",
                    "cache read")


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def _figure_cells(t: Totals) -> list[str]:
    return [f"{t.requests:,}", f"{t.errors:,}", f"{t.tokens_before:,}", f"{t.tokens_after:,}", _percent(t.saved_share),
            f"{t.usd_spent:,.4f}", f"{t.usd_saved:,.4f}", _percent(t.cache_read_share)]


def _key_cell(name: str, value: str | None) -> str:
    if value is None:
        return "-"
    if name == "caller" and len(value) > CALLER_WIDTH:
        return value[:CALLER_WIDTH]
    return value


def summary_line(report: Report) -> str:
    text = f"{report.lines:,} lines"
    if report.files:
        text += f" in {len(report.files)} file{'s' if len(report.files) != 1 else ''}"
    text += f"; {report.malformed:,} malformed, skipped"
    if report.malformed_at:
        text += f" (first: {', '.join(report.malformed_at)})"
    if report.excluded:
        text += f"; {report.excluded:,} outside the dates"
    return text + "."


def render_table(report: Report) -> str:
    """An aligned text table: one row per group, then a totals row, then a line about the input."""
    head = [_HEADINGS[name] for name in report.by] + list(_FIGURE_HEADINGS)
    body = [[_key_cell(name, value) for name, value in zip(report.by, row.key)] + _figure_cells(row.totals)
            for row in report.rows]
    total = ["total"] + [""] * (len(report.by) - 1) + _figure_cells(report.totals)
    table = [head, *body, total]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    keys = len(report.by)

    def line(cells: list[str]) -> str:
        parts = [c.ljust(w) if i < keys else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [line(head), rule, *(line(r) for r in body), rule, line(total), "",
           f"cache read = {CACHE_SHARE_FORMULA}; saved = tokens removed / tokens before; days are UTC.",
           summary_line(report)]
    return "\n".join(out) + "\n"


def report_dict(report: Report) -> dict[str, Any]:
    return {
        "by": list(report.by), "since": report.since, "until": report.until, "files": list(report.files),
        "lines": report.lines, "malformed": report.malformed, "malformed_at": report.malformed_at,
        "excluded": report.excluded, "cache_read_share_formula": CACHE_SHARE_FORMULA,
        "rows": [dict(zip(report.by, row.key), **row.totals.as_dict()) for row in report.rows],
        "totals": report.totals.as_dict(),
    }


def render_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2) + "\n"
