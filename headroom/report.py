"""``headroom report``: what the request log (``--log-file``) says was spent and saved.

Three pure steps, then the command:

- :func:`parse_line` turns one log line into an :data:`Entry` (or ``None`` when it is malformed);
- :class:`Aggregator` sums entries per (day, model, caller), and :func:`summarise` rolls those
  sums up to the grouping asked for (``--by``) into a :class:`Report` of :class:`Row` and
  :class:`Totals`;
- :func:`render_table` / :func:`render_json` / :func:`draw_png` present it.

Speed: a log of a million lines is read in seconds. Each line is decoded whole with ``ujson``
(a C decoder, already a dependency; slicing out only the figures measured slower), and the hot
loop (:meth:`Aggregator.feed`) applies :func:`entry_of`'s rules inline, checking a group's key
once when the group is first seen rather than on every line. ``tests/test_report.py`` checks
that the two agree, line by line.

Days are UTC (the log's timestamps are). The caller is only ever the key hash the log already
carries (``api_key_hash``). The prompt-cache read share is
``cache_read_tokens / (input_tokens + cache_read_tokens + cache_write_tokens)``: the log's
``input_tokens`` is the *uncached* input for both providers (Anthropic reports it so; for OpenAI
the proxy logs ``prompt_tokens - cached_tokens``, see :class:`headroom.pricing.Usage`), so the
denominator is all the input the upstream billed.
"""

from __future__ import annotations

import gzip
import itertools
import json
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import IO, Any

import ujson

DIMENSIONS = ("day", "model", "caller")
CACHE_SHARE_FORMULA = "cache_read_tokens / (input_tokens + cache_read_tokens + cache_write_tokens)"
INSTALL_HINT = "pip install 'headroom-ai[report]'"
MALFORMED_EXAMPLES = 5  # how many malformed line positions are kept for the message

# day, model, caller, error, tokens_before, tokens_after, input, output, cache_read, cache_write, usd_spent, usd_saved
Entry = tuple[str, str | None, str | None, bool, int, int, int, int, int, int, float, float]

# Number of summed figures per group, in this order (an accumulator is a list of them).
_REQUESTS, _ERRORS, _BEFORE, _AFTER, _INPUT, _OUTPUT, _READ, _WRITE, _SPENT, _SAVED = range(10)


# --- parse and aggregate ---------------------------------------------------------------------

_MALFORMED = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError)


def _is_day(day: str) -> bool:
    return len(day) == 10 and day[4] == "-" and day[7] == "-" and day[:4].isdigit() and day[5:7].isdigit() \
        and day[8:].isdigit()


def _valid_key(day: Any, model: Any, caller: Any) -> bool:
    return type(day) is str and _is_day(day) and (model is None or type(model) is str) \
        and (caller is None or type(caller) is str)


def entry_of(record: Any) -> Entry:
    """The entry of one decoded log record; raises (one of ``_MALFORMED``) when it is not one.

    The rules, which :meth:`Aggregator.feed` applies too (faster, inline): ``timestamp`` is a
    string starting with a day ``YYYY-MM-DD``; ``model`` and ``api_key_hash`` are strings or
    null; a figure that is missing or null counts 0, any other figure must be a number; a
    request is an error when ``error`` is set or ``status`` >= 400; ``usd_spent`` falls back to
    ``cost_usd`` (the same figure, in logs older than ``usd_spent``)."""
    get = record.get
    day, model, caller = record["timestamp"][:10], get("model"), get("api_key_hash")
    if not _valid_key(day, model, caller):
        raise ValueError("not a log record")
    error = get("error") is not None or (get("status") or 0) >= 400
    spent = get("usd_spent")
    if spent is None:
        spent = get("cost_usd")
    figures = (get("tokens_before") or 0, get("tokens_after") or 0, get("input_tokens") or 0,
               get("output_tokens") or 0, get("cache_read_tokens") or 0, get("cache_write_tokens") or 0,
               spent or 0.0, get("usd_saved") or 0.0)
    for value in figures:
        value + 0  # TypeError unless a number, as when it is summed
    return (day, model, caller, error, *figures)  # type: ignore[return-value]


def parse_line(line: bytes) -> Entry | None:
    """One log line (with or without its newline) → its :data:`Entry`, or ``None`` if malformed."""
    try:
        return entry_of(ujson.loads(line))
    except _MALFORMED:
        return None


@dataclass
class Aggregator:
    """Sums entries per (day, model, caller); counts lines, malformed ones and those outside the dates."""

    since: str | None = None  # YYYY-MM-DD, inclusive
    until: str | None = None  # YYYY-MM-DD, inclusive
    groups: dict[tuple[str, str | None, str | None], list[Any]] = field(default_factory=dict)
    lines: int = 0  # non-blank lines read
    malformed: int = 0
    # (file, line number) of the first few malformed lines; line 0 for a file that could not be read to its end
    malformed_at: list[tuple[str, int]] = field(default_factory=list)
    excluded: int = 0  # well-formed, but outside --since/--until

    def _bad(self, name: str, number: int) -> None:
        self.malformed += 1
        if len(self.malformed_at) < MALFORMED_EXAMPLES:
            self.malformed_at.append((name, number))

    def merge(self, other: Aggregator, line_offset: int = 0) -> None:
        """Add another aggregator's sums (of the next part of a file: its line numbers move by ``line_offset``)."""
        for key, acc in other.groups.items():
            mine = self.groups.get(key)
            if mine is None:
                self.groups[key] = list(acc)
            else:
                for i, value in enumerate(acc):
                    mine[i] += value
        self.lines += other.lines
        self.excluded += other.excluded
        self.malformed += other.malformed
        room = MALFORMED_EXAMPLES - len(self.malformed_at)
        self.malformed_at += [(name, n + line_offset if n else 0) for name, n in other.malformed_at[:max(room, 0)]]

    def add(self, entry: Entry) -> None:
        """Add one parsed entry (the slow, plain path; :meth:`feed` does the same inline)."""
        self.lines += 1
        day = entry[0]
        if (self.since is not None and day < self.since) or (self.until is not None and day > self.until):
            self.excluded += 1
            return
        key = entry[:3]
        acc = self.groups.get(key)  # type: ignore[arg-type]
        if acc is None:
            acc = self.groups[key] = [0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0]  # type: ignore[index]
        acc[_REQUESTS] += 1
        acc[_ERRORS] += entry[3]
        for i in range(8):
            acc[_BEFORE + i] += entry[4 + i]

    def feed(self, lines: Iterable[bytes], name: str = "-") -> int:
        """Parse and add every line of one file (``name`` only labels malformed lines); the number of lines.

        This is the hot loop (a million lines in seconds): :func:`entry_of`'s rules, inline, with
        the key's checks done once per new (day, model, caller) rather than once per line."""
        loads, groups, since, until = ujson.loads, self.groups, self.since, self.until
        read = excluded = number = 0
        for number, line in enumerate(lines, 1):  # number: the count, afterwards
            try:
                record = loads(line)
                get = record.get
                day = record["timestamp"][:10]
                key = (day, get("model"), get("api_key_hash"))
                acc = groups.get(key)
                fresh = acc is None
                if fresh:
                    if not _valid_key(*key):
                        raise ValueError("not a log record")
                    acc = [0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0]
                error = get("error") is not None or (get("status") or 0) >= 400
                spent = get("usd_spent")
                if spent is None:
                    spent = get("cost_usd")
                # Summed into new values first: a figure that is not a number fails here, before
                # anything is changed.
                before = acc[_BEFORE] + (get("tokens_before") or 0)
                after = acc[_AFTER] + (get("tokens_after") or 0)
                inp = acc[_INPUT] + (get("input_tokens") or 0)
                out = acc[_OUTPUT] + (get("output_tokens") or 0)
                c_read = acc[_READ] + (get("cache_read_tokens") or 0)
                c_write = acc[_WRITE] + (get("cache_write_tokens") or 0)
                usd_spent = acc[_SPENT] + (spent or 0.0)
                usd_saved = acc[_SAVED] + (get("usd_saved") or 0.0)
            except _MALFORMED:
                if line.strip():
                    read += 1
                    self._bad(name, number)
                continue
            read += 1
            if (since is not None and day < since) or (until is not None and day > until):
                excluded += 1
                continue
            if fresh:
                groups[key] = acc
            acc[_REQUESTS] += 1
            acc[_ERRORS] += error
            acc[_BEFORE], acc[_AFTER], acc[_INPUT], acc[_OUTPUT] = before, after, inp, out
            acc[_READ], acc[_WRITE], acc[_SPENT], acc[_SAVED] = c_read, c_write, usd_spent, usd_saved
        self.lines += read
        self.excluded += excluded
        return number


def open_log(path: str) -> IO[bytes]:
    """A log file for reading as bytes: ``-`` is stdin; gzip is recognised by its magic bytes."""
    if path == "-":
        return sys.stdin.buffer
    raw = open(path, "rb")  # returned to the caller, who closes it
    if raw.peek(2)[:2] != b"\x1f\x8b":
        return raw
    raw.close()
    return gzip.open(path, "rb")  # type: ignore[return-value]


PARALLEL_MIN_BYTES = 16 << 20  # plain files at least this big are read in parts, in parallel


def _read_whole(path: str, since: str | None, until: str | None) -> Aggregator:
    agg = Aggregator(since=since, until=until)
    stream = open_log(path)
    try:
        agg.feed(stream, path)
    except (EOFError, OSError) as exc:  # gzip.BadGzipFile is an OSError; EOFError: a .gz cut short
        agg._bad(f"{path} ({type(exc).__name__}: {exc})", 0)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return agg


def _lines_between(stream: IO[bytes], end: int) -> Iterator[bytes]:
    position = stream.tell()
    for line in stream:
        yield line
        position += len(line)
        if position >= end:
            return


def _read_part(path: str, start: int, end: int, since: str | None, until: str | None) -> tuple[Aggregator, int]:
    """The lines starting in [start, end) of a plain file (both on line starts); and how many there are."""
    agg = Aggregator(since=since, until=until)
    with open(path, "rb") as stream:
        stream.seek(start)
        count = agg.feed(_lines_between(stream, end), path) if end > start else 0
    return agg, count


def _line_starts(path: str, size: int, parts: int) -> list[int]:
    """``parts`` + 1 offsets splitting the file at line starts (the first 0, the last ``size``)."""
    cuts = [0]
    with open(path, "rb") as stream:
        for k in range(1, parts):
            stream.seek(max(size * k // parts - 1, cuts[-1]))
            stream.readline()  # to the end of the line the cut falls in
            cuts.append(max(min(stream.tell(), size), cuts[-1]))
    cuts.append(size)
    return cuts


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def read_logs(paths: Sequence[str], since: str | None = None, until: str | None = None,
              jobs: int | None = None) -> Aggregator:
    """Read every log (plain or gzip, ``-`` for stdin) into one :class:`Aggregator`; OSError if
    one cannot be opened. A gzip file cut short counts as one malformed line.

    With ``jobs`` > 1 (default: the CPUs this process may use) and ``fork`` available, plain files
    of :data:`PARALLEL_MIN_BYTES` or more are split at line starts and read by that many
    processes, and gzip files each by one; the result is the same as reading them in order."""
    for path in paths:  # fail before any work on a path that cannot be opened
        if path != "-":
            open_log(path).close()
    jobs = default_jobs() if jobs is None else max(1, jobs)
    tasks: list[tuple[str, int, int] | tuple[str]] = []
    for path in paths:
        size = os.path.getsize(path) if path != "-" and os.path.isfile(path) else -1
        plain = size >= 0 and not _is_gzip(path)
        if jobs > 1 and plain and size >= PARALLEL_MIN_BYTES:
            cuts = _line_starts(path, size, jobs)
            tasks += [(path, a, b) for a, b in itertools.pairwise(cuts)]
        else:
            tasks.append((path,))
    agg = Aggregator(since=since, until=until)
    parallel = jobs > 1 and len(tasks) > 1 and "fork" in multiprocessing.get_all_start_methods()
    if not parallel:
        results = [_run_task(task, since, until) for task in tasks]
    else:
        # fork, not spawn: spawn would re-run ``python -m headroom``'s __main__ in every worker.
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context) as pool:
            futures = [pool.submit(_run_task, task, since, until) if task != ("-",) else None for task in tasks]
            stdin = _run_task(("-",), since, until) if ("-",) in tasks else None  # read here, meanwhile
            results = [stdin if f is None else f.result() for f in futures]  # type: ignore[misc]
    offset, current = 0, None
    for task, (part, count) in zip(tasks, results):
        if task[0] != current:
            offset, current = 0, task[0]
        agg.merge(part, offset)
        offset += count
    return agg


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as stream:
        return stream.read(2) == b"\x1f\x8b"


def _run_task(task: tuple[str, int, int] | tuple[str], since: str | None, until: str | None) -> tuple[Aggregator, int]:
    if len(task) == 3:
        return _read_part(task[0], task[1], task[2], since, until)  # type: ignore[misc]
    return _read_whole(task[0], since, until), 0


# --- summarise ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Totals:
    """Summed figures of a group of requests."""

    requests: int = 0
    errors: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    usd_spent: float = 0.0
    usd_saved: float = 0.0

    @property
    def tokens_saved(self) -> int:
        return self.tokens_before - self.tokens_after

    @property
    def saved_share(self) -> float | None:
        """Share of the tokens compression removed; ``None`` with no tokens."""
        return self.tokens_saved / self.tokens_before if self.tokens_before else None

    @property
    def cache_read_share(self) -> float | None:
        """:data:`CACHE_SHARE_FORMULA`; ``None`` when no input was reported."""
        billed = self.input_tokens + self.cache_read_tokens + self.cache_write_tokens
        return self.cache_read_tokens / billed if billed else None

    def plus(self, acc: Sequence[Any]) -> Totals:
        return Totals(*(a + b for a, b in zip(self.figures(), acc)))

    def figures(self) -> tuple[Any, ...]:
        return (self.requests, self.errors, self.tokens_before, self.tokens_after, self.input_tokens,
                self.output_tokens, self.cache_read_tokens, self.cache_write_tokens, self.usd_spent, self.usd_saved)

    def as_dict(self) -> dict[str, Any]:
        share, saved = self.cache_read_share, self.saved_share
        return {
            "requests": self.requests, "errors": self.errors,
            "tokens_before": self.tokens_before, "tokens_after": self.tokens_after, "tokens_saved": self.tokens_saved,
            "tokens_saved_share": None if saved is None else round(saved, 6),
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens, "cache_write_tokens": self.cache_write_tokens,
            "usd_spent": round(self.usd_spent, 8), "usd_saved": round(self.usd_saved, 8),
            "cache_read_share": None if share is None else round(share, 6),
        }


@dataclass(frozen=True)
class Row:
    key: tuple[str | None, ...]  # one value per dimension of Report.by
    totals: Totals


@dataclass(frozen=True)
class Report:
    by: tuple[str, ...]
    rows: list[Row]
    totals: Totals
    days: list[tuple[str, Totals]]  # per day, whatever ``by`` is (for the chart)
    lines: int = 0
    malformed: int = 0
    malformed_at: list[str] = field(default_factory=list)
    excluded: int = 0
    files: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None


def _sort_key(key: tuple[str | None, ...]) -> tuple[str, ...]:
    return tuple("" if part is None else part for part in key)


def summarise(agg: Aggregator, by: Sequence[str] = DIMENSIONS, files: Sequence[str] = ()) -> Report:
    """Roll the per-(day, model, caller) sums up to the dimensions ``by`` (in that order)."""
    unknown = [name for name in by if name not in DIMENSIONS]
    if unknown or not by or len(set(by)) != len(by):
        raise ValueError(f"--by takes distinct names among {', '.join(DIMENSIONS)}")
    positions = [DIMENSIONS.index(name) for name in by]
    grouped: dict[tuple[str | None, ...], Totals] = {}
    days: dict[str, Totals] = {}
    total = Totals()
    for fine, acc in agg.groups.items():
        key = tuple(fine[i] for i in positions)
        grouped[key] = grouped.get(key, Totals()).plus(acc)
        days[fine[0]] = days.get(fine[0], Totals()).plus(acc)
        total = total.plus(acc)
    rows = [Row(key, grouped[key]) for key in sorted(grouped, key=_sort_key)]
    return Report(
        by=tuple(by), rows=rows, totals=total, days=sorted(days.items()),
        lines=agg.lines, malformed=agg.malformed, excluded=agg.excluded,
        malformed_at=[f"{name}:{n}" if n else name for name, n in agg.malformed_at],
        files=tuple(files), since=agg.since, until=agg.until,
    )


# --- render -----------------------------------------------------------------------------------

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


# --- chart --------------------------------------------------------------------------------------

def matplotlib_missing() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return True
    return False


def draw_png(report: Report, path: str) -> None:
    """Savings over time: dollars spent and saved per day, and tokens before/after per day."""
    from datetime import datetime

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    days = [datetime.strptime(day, "%Y-%m-%d") for day, _ in report.days]
    totals = [t for _, t in report.days]
    figure = Figure(figsize=(10, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    money, tokens = figure.subplots(2, 1, sharex=True)
    marker = "o" if len(days) <= 60 else None
    money.plot(days, [t.usd_spent for t in totals], marker=marker, label="spent", color="#c0392b")
    money.plot(days, [t.usd_saved for t in totals], marker=marker, label="saved", color="#27ae60")
    money.set_ylabel("USD per day")
    money.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v:,.2f}"))
    saved, spent = report.totals.usd_saved, report.totals.usd_spent
    # An escaped $ is a dollar sign; two bare ones would start mathtext.
    money.set_title(f"Headroom: \\${saved:,.2f} saved, \\${spent:,.2f} spent"
                    f" ({report.totals.requests:,} requests)")
    money.set_ylim(bottom=0)
    money.legend(loc="best")
    money.grid(alpha=0.3)
    tokens.plot(days, [t.tokens_before for t in totals], marker=marker, label="tokens before", color="#7f8c8d")
    tokens.plot(days, [t.tokens_after for t in totals], marker=marker, label="tokens after", color="#2980b9")
    tokens.fill_between(days, [t.tokens_after for t in totals], [t.tokens_before for t in totals],
                        color="#2980b9", alpha=0.12, label="removed")
    tokens.set_ylabel("input tokens per day")
    tokens.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    tokens.set_ylim(bottom=0)
    tokens.legend(loc="best")
    tokens.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.savefig(path, format="png")


# --- the command --------------------------------------------------------------------------------

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

