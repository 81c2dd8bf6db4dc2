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


def retrieval_lines(report: Report) -> list[str]:
    """What the retrieval policy did, when the log says it did anything: retrievals, the
    savings net of what they gave back, and the tools whose new outputs were kept lossless."""
    sums = report.retrieval
    lines: list[str] = []
    if sums.retrievals or sums.retrieved_tokens:
        before = report.totals.tokens_before
        share = f" ({report.tokens_saved_net / before * 100:.1f}%)" if before else ""
        lines.append(f"retrievals: {sums.retrievals:,}, giving back {sums.retrieved_tokens:,} tokens; tokens saved "
                     f"net of them: {report.tokens_saved_net:,}{share}.")
    if sums.backed_off:
        tools = ", ".join(f"{tool} in {requests:,} request{'s' if requests != 1 else ''} "
                          f"({len(callers)} caller{'s' if len(callers) != 1 else ''})"
                          for tool, (requests, callers) in sorted(sums.backed_off.items()))
        lines.append(f"backed off (retrieved too often; new outputs kept lossless): {tools}.")
    return lines


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
           *retrieval_lines(report), summary_line(report)]
    return "\n".join(out) + "\n"


def report_dict(report: Report) -> dict[str, Any]:
    return {
        "by": list(report.by), "since": report.since, "until": report.until, "files": list(report.files),
        "lines": report.lines, "malformed": report.malformed, "malformed_at": report.malformed_at,
        "excluded": report.excluded, "cache_read_share_formula": CACHE_SHARE_FORMULA,
        "rows": [dict(zip(report.by, row.key), **row.totals.as_dict()) for row in report.rows],
        "totals": report.totals.as_dict(),
        "retrieval": {
            "retrievals": report.retrieval.retrievals, "retrieved_tokens": report.retrieval.retrieved_tokens,
            "tokens_saved_net": report.tokens_saved_net,
            "backed_off": {tool: {"requests": requests, "callers": len(callers)}
                           for tool, (requests, callers) in sorted(report.retrieval.backed_off.items())},
        },
    }


def render_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2) + "\n"
