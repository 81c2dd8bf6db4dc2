"""``--log-file``: one JSON line per request, appended safely by any number of workers.

Every worker opens the file itself (lazily, so a descriptor never crosses a fork or
spawn) with ``O_APPEND`` and writes each line with one ``os.write``. On a local file
system the kernel appends each such write whole, so lines from different processes never
interleave, without a lock between them. (Network file systems may not honour this.)

Whole lines only: when the disk fills up (or the file reaches ``RLIMIT_FSIZE``) a write
may land only in part. Its remainder cannot simply follow later, as another worker's line
may already have been appended behind it, so the line is dropped instead: the part written
is blanked with spaces in place (bytes this writer owns, whatever came after them). Spaces
before a JSON line are still valid JSON, so
the file holds whole lines only, and writing resumes by itself once there is room again.

The log proves savings to operators, so it carries the figures, never secrets: the
caller appears only as the keyed hash the proxy already computed, and message content
only when the operator asked for it with ``--log-messages``. Writing is best effort: a
full disk or a vanished directory is counted and warned about once, never raised into
the request path.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import ujson

from headroom.observability import metrics

if TYPE_CHECKING:
    from headroom.outcome import RequestOutcome

log = logging.getLogger("headroom.observability")

# The schema, in order. ``messages`` is added only with ``--log-messages``.
FIELDS = (
    "timestamp", "request_id", "provider", "model", "path", "stream", "status",
    "tokens_before", "tokens_after", "tokens_saved",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "cost_usd", "usd_spent", "usd_saved", "latency_ms", "overhead_ms", "ttfb_ms",
    "cache", "transforms", "limited", "error", "api_key_hash", "upstream_calls", "retrievals",
)

_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _num(value: float | None, digits: int = 3) -> float | None:
    """Rounded, or ``None`` for a missing or non-finite figure (JSON has no NaN)."""
    return None if value is None or not math.isfinite(value) else round(value, digits)


def record_of(outcome: RequestOutcome, log_messages: bool = False) -> dict[str, Any]:
    """The log record of one request: the :data:`FIELDS`, plus ``messages`` if asked."""
    record: dict[str, Any] = {
        "timestamp": _iso(outcome.timestamp),
        "request_id": outcome.request_id,
        "provider": outcome.provider,
        "model": outcome.model,
        "path": outcome.path,
        "stream": outcome.stream,
        "status": outcome.status,
        "tokens_before": outcome.tokens_before,
        "tokens_after": outcome.tokens_after,
        "tokens_saved": outcome.tokens_saved,
        "input_tokens": outcome.input_tokens,
        "output_tokens": outcome.output_tokens,
        "cache_read_tokens": outcome.cache_read_tokens,
        "cache_write_tokens": outcome.cache_write_tokens,
        "cost_usd": _num(outcome.cost_usd, 8),
        "usd_spent": _num(outcome.cost_usd, 8),  # the same figure, named to pair with usd_saved
        "usd_saved": _num(outcome.usd_saved, 8),  # cache-aware estimate (headroom.savings)
        "latency_ms": _num(outcome.latency_ms),
        "overhead_ms": _num(outcome.overhead_ms),
        "ttfb_ms": _num(outcome.ttfb_ms),
        "cache": outcome.cache,
        "transforms": list(outcome.transforms),
        "limited": outcome.limited,
        "error": outcome.error,
        "api_key_hash": outcome.caller,
        "upstream_calls": outcome.upstream_calls,  # usage and cost above count every one of them
        "retrievals": outcome.retrievals,
    }
    if log_messages and outcome.messages is not None:
        record["messages"] = outcome.messages
    return record


def encode(record: dict[str, Any]) -> bytes:
    """One line of ASCII JSON: newlines and non-ASCII text inside strings are escaped."""
    return ujson.dumps(record, escape_forward_slashes=False, allow_nan=False).encode("ascii") + b"\n"


class RequestLog:
    """Appends :func:`record_of` lines to ``path``; safe to share across workers.

    The file is created with mode 0600 (it names callers, if only by hash). If it is
    renamed away (log rotation), the next write after ``reopen_check_s`` opens a fresh one.
    """

    def __init__(self, path: str, log_messages: bool = False, reopen_check_s: float = 1.0) -> None:
        self.path = path
        self.log_messages = log_messages
        self.failures = 0  # lines lost to I/O errors, in this process
        self._failing = False  # since the last failure, no line has been written
        self._reopen_check_s = reopen_check_s
        self._fd: int | None = None
        self._pid = 0
        self._inode: tuple[int, int] | None = None
        self._checked_at = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}

    def check(self) -> None:
        """Open the file once and close it, raising ``OSError`` now rather than at the first request."""
        os.close(os.open(self.path, _OPEN_FLAGS, 0o600))

    def write(self, outcome: RequestOutcome) -> None:
        try:
            line = encode(record_of(outcome, self.log_messages))
            fd = self._descriptor()
            written = os.write(fd, line)
            if written != len(line):
                if written > 0:
                    drop_partial_line(fd, written)
                raise OSError(f"short write: {written} of {len(line)} bytes (no room left?); the line was dropped")
        except Exception as exc:  # noqa: BLE001 - the request has been answered; losing a log line must not fail it
            self._failed(exc)
            return
        if self._failing:
            self._failing = False
            log.warning("request log %s: writing again (%d lines lost in this process so far)", self.path,
                        self.failures)

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd = None

    def _descriptor(self) -> int:
        now = time.monotonic()
        if self._fd is not None and self._pid != os.getpid():
            # Inherited across a fork: open our own and leave that descriptor to the parent.
            self._fd = None
        if self._fd is not None and now - self._checked_at >= self._reopen_check_s:
            self._checked_at = now
            if self._rotated():
                self.close()
        if self._fd is None:
            self._fd = os.open(self.path, _OPEN_FLAGS, 0o600)
            self._pid = os.getpid()
            stat = os.fstat(self._fd)
            self._inode = (stat.st_dev, stat.st_ino)
            self._checked_at = now
        return self._fd

    def _rotated(self) -> bool:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (stat.st_dev, stat.st_ino) != self._inode

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if not self._failing:
            self._failing = True
            log.warning("request log %s: cannot write (%s); lines are dropped and counted "
                        "(headroom_request_log_lines_lost_total) until it works again", self.path, exc)
        self.close()  # reopen on the next write, in case the path has come back
        metrics.request_log_line_lost()


def drop_partial_line(fd: int, written: int) -> None:
    """Undo an ``O_APPEND`` write of which only the first ``written`` bytes landed.

    Those bytes end at this descriptor's offset (an append moves it to the end of what it
    wrote). They are overwritten with spaces, which touches no other writer's bytes and
    needs no new space. The next line appended (by any process) follows the spaces on the
    same line: still one valid JSON line. They are not cut off the file: a line another
    worker appended between a size check and the cut would be lost with them.
    ``pwrite`` on an ``O_APPEND`` descriptor appends on Linux whatever the offset, hence
    the flag is off for the overwrite (the descriptor is this process's own).
    """
    end = os.lseek(fd, 0, os.SEEK_CUR)
    start = end - written
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_APPEND)
    try:
        os.pwrite(fd, b" " * written, start)
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
