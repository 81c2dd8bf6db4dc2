"""Reading log files into one :class:`~headroom.report.aggregate.Aggregator`: plain, gzip or
stdin; big plain files split at line starts and read by several processes.
"""

from __future__ import annotations

import gzip
import itertools
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import IO

from headroom.report.aggregate import Aggregator


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
        agg.count_malformed(f"{path} ({type(exc).__name__}: {exc})", 0)
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
