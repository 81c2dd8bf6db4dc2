"""Log lines → sums per (day, model, caller): the parsing rules and the hot loop that applies them.

:func:`parse_line` turns one log line into an :data:`Entry` (or ``None`` when it is malformed);
:class:`Aggregator` sums entries per (day, model, caller). A log of a million lines is read in
seconds: each line is decoded whole with ``ujson`` (a C decoder, already a dependency; slicing
out only the figures measured slower), and the hot loop (:meth:`Aggregator.feed`) applies
:func:`entry_of`'s rules inline, checking a group's key once when the group is first seen rather
than on every line. ``tests/test_report.py`` checks that the two agree, line by line.

Days are UTC (the log's timestamps are). The caller is only ever the key hash the log already
carries (``api_key_hash``).

The retrieval policy's figures (``retrievals``, ``retrieved_tokens``, ``backed_off``: newer
fields, absent from older logs) are summed for the whole report, not per group: a value of
the wrong type there counts 0 rather than making the line malformed (:func:`retrieval_figures`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import ujson

MALFORMED_EXAMPLES = 5  # how many malformed line positions are kept for the message

# day, model, caller, error, tokens_before, tokens_after, input, output, cache_read, cache_write, usd_spent, usd_saved,
# retrievals, retrieved_tokens, backed-off tools
Entry = tuple[str, str | None, str | None, bool, int, int, int, int, int, int, float, float, int, int,
              tuple[str, ...]]

# Number of summed figures per group, in this order (an accumulator is a list of them).
_REQUESTS, _ERRORS, _BEFORE, _AFTER, _INPUT, _OUTPUT, _READ, _WRITE, _SPENT, _SAVED = range(10)


_MALFORMED = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError)


def _is_day(day: str) -> bool:
    return len(day) == 10 and day[4] == "-" and day[7] == "-" and day[:4].isdigit() and day[5:7].isdigit() \
        and day[8:].isdigit()


def _valid_key(day: Any, model: Any, caller: Any) -> bool:
    return type(day) is str and _is_day(day) and (model is None or type(model) is str) \
        and (caller is None or type(caller) is str)


def retrieval_figures(record: dict) -> tuple[int, int, tuple[str, ...]]:
    """(retrievals, retrieved tokens, backed-off tools) of a record; anything malformed counts 0."""
    get = record.get
    count, used, tools = get("retrievals"), get("retrieved_tokens"), get("backed_off")
    return (count if type(count) is int and count > 0 else 0, used if type(used) is int and used > 0 else 0,
            tuple(t for t in tools if type(t) is str) if type(tools) is list else ())


@dataclass
class RetrievalSums:
    """The retrieval policy's figures over the whole report."""

    retrievals: int = 0
    retrieved_tokens: int = 0
    # tool → (requests that kept its new outputs lossless, the callers (key hashes) they came from)
    backed_off: dict[str, tuple[int, set[str]]] = field(default_factory=dict)

    def add(self, retrievals: int, tokens: int, tools: tuple[str, ...], caller: str | None) -> None:
        self.retrievals += retrievals
        self.retrieved_tokens += tokens
        for tool in tools:
            requests, callers = self.backed_off.get(tool, (0, set()))
            self.backed_off[tool] = (requests + 1, callers | ({caller} if caller else set()))

    def merge(self, other: RetrievalSums) -> None:
        self.retrievals += other.retrievals
        self.retrieved_tokens += other.retrieved_tokens
        for tool, (requests, callers) in other.backed_off.items():
            mine = self.backed_off.get(tool, (0, set()))
            self.backed_off[tool] = (mine[0] + requests, mine[1] | callers)


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
    return (day, model, caller, error, *figures, *retrieval_figures(record))  # type: ignore[return-value]


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
    retrieval: RetrievalSums = field(default_factory=RetrievalSums)

    def count_malformed(self, name: str, number: int) -> None:
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
        self.retrieval.merge(other.retrieval)
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
        if entry[12] or entry[13] or entry[14]:
            self.retrieval.add(entry[12], entry[13], entry[14], entry[2])

    def feed(self, lines: Iterable[bytes], name: str = "-") -> int:
        """Parse and add every line of one file (``name`` only labels malformed lines); the number of lines.

        This is the hot loop (a million lines in seconds): :func:`entry_of`'s rules, inline, with
        the key's checks done once per new (day, model, caller) rather than once per line."""
        loads, groups, since, until = ujson.loads, self.groups, self.since, self.until
        retrieval = self.retrieval
        read = excluded = number = 0
        for number, line in enumerate(lines, 1):  # number: the count, afterwards
            try:
                record = loads(line)
                get = record.get
                day = record["timestamp"][:10]
                key = (day, get("model"), get("api_key_hash"))
                acc = groups.get(key)
                fresh = acc is None
                if acc is None:
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
                    self.count_malformed(name, number)
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
            if get("retrievals") or get("retrieved_tokens") or get("backed_off"):  # rare
                retrieval.add(*retrieval_figures(record), key[2])
        self.lines += read
        self.excluded += excluded
        return number
