"""``headroom report``: what the request log (``--log-file``) says was spent and saved.

Four steps, a module each, then the command (:mod:`~headroom.report.command`):

- :mod:`~headroom.report.aggregate`: one log line → an entry; entries summed per (day, model, caller);
- :mod:`~headroom.report.reading`: files (plain, gzip, stdin; big ones in parallel) → one aggregator;
- :mod:`~headroom.report.summary`: those sums rolled up to ``--by`` → a :class:`Report`;
- :mod:`~headroom.report.render` (table, JSON) and :mod:`~headroom.report.chart` (``--png``) present it.

The names below are the package's interface (the CLI and the tests use them).
"""

from headroom.report.aggregate import Aggregator, Entry, entry_of, parse_line
from headroom.report.command import parse_by, parse_day, run
from headroom.report.reading import open_log, read_logs
from headroom.report.render import render_json, render_table
from headroom.report.summary import CACHE_SHARE_FORMULA, DIMENSIONS, Report, Row, Totals, summarise

__all__ = [
    "CACHE_SHARE_FORMULA", "DIMENSIONS", "Aggregator", "Entry", "Report", "Row", "Totals", "entry_of", "open_log",
    "parse_by", "parse_day", "parse_line", "read_logs", "render_json", "render_table", "run", "summarise",
]
