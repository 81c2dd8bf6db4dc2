"""Server-sent events framing, shared by the stream relay and the usage parser.

The SSE spec (WHATWG HTML, "Interpreting an event stream") ends a line with CRLF, LF or a
lone CR, and an event with a blank line, so ``\\n\\n``, ``\\r\\n\\r\\n`` and ``\\r\\r`` (and
mixtures) all end an event; each further blank line ends another (empty) one. Where the
network cuts the stream must not matter: a CR that is the last byte received may be the
first half of a CRLF, so it only counts as a line end once the next byte has arrived, or
the stream has ended. Splitting therefore gives the same events whatever the chunk
boundaries were, and the bytes themselves are never changed.

An event is held until it is complete, so its size is bounded: :data:`MAX_EVENT_BYTES`
(16 MiB) is far above any real event (a delta is a few bytes to a few KiB; the largest,
Responses' ``response.completed``, repeats the whole answer, and a non-streamed answer may
take ``--max-response-mb``, 64 MiB by default, of which an answer's text is a small part),
and far below what would hurt a worker. :class:`EventBuffer` raises :class:`EventTooLong`
past it and the relay ends the stream with the provider's error event.
"""

from __future__ import annotations

import re

from headroom.formats.base import split_events

__all__ = ["MAX_EVENT_BYTES", "EventBuffer", "EventTooLong", "last_event_end", "split_events"]

_EOL_RUN = re.compile(rb"[\r\n]+")
_CR = 0x0D
_EOL_BYTES = (0x0A, 0x0D)

MAX_EVENT_BYTES = 16 * 1024 * 1024
"""The most bytes an unfinished event (or a line of it) may take while it waits for its end."""


class EventTooLong(ValueError):
    """The upstream sent more than the bound without ending an event."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"an SSE event grew past {limit} bytes without ending")
        self.limit = limit


def _last_end(data: bytes | bytearray, start: int, final: bool, has_cr: bool = True) -> int:
    """Offset just past the last event end found at or after ``start`` (0: none).

    ``data[0]`` is a line end (the byte before the stream's pending part, or a virtual LF
    at its start). A CR as the very last byte is undecided unless ``final``. ``has_cr``
    False: the caller knows ``data`` holds no CR.
    """
    if not has_cr:  # the common case, LF only: at C speed
        found = data.rfind(b"\n\n", max(0, start - 1))
        return found + 2 if found >= 0 else 0
    # Line ends come in runs of CR and LF bytes; in a run, a CRLF is one line end and any
    # other byte one too. The first ends the line before the run, each further one an empty
    # line, i.e. an event. A run is read from its first byte, never from its middle.
    begin = max(0, start - 1)
    while begin and data[begin - 1] in _EOL_BYTES:
        begin -= 1
    last = 0
    size = len(data)
    for run in _EOL_RUN.finditer(data, begin):
        run_start, run_end = run.span()
        if run_end == size and data[run_end - 1] == _CR and not final:
            run_end -= 1  # may be the first half of a CRLF still on its way
        length = run_end - run_start
        if length - data.count(b"\r\n", run_start, run_end) >= 2:
            last = run_end
    return last


def last_event_end(data: bytes, final: bool = False) -> int:
    """Offset just past the last complete event in ``data``, a stream from its start (0: none);
    ``final``: the stream ends there (a last CR is a line end)."""
    end = _last_end(b"\n" + data, 1, final, b"\r" in data)
    return end - 1 if end else 0


class EventBuffer:
    """Collects a stream's bytes as they arrive and hands back whole events only."""

    __slots__ = ("_has_cr", "_limit", "_pending", "_searched")

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        self._limit = limit  # the most bytes held for an unfinished event
        # One byte of context first: the byte before the pending ones (a stream starts at the
        # beginning of a line). Appended to in place: a long event in many chunks stays linear.
        self._pending = bytearray(b"\n")
        self._searched = 1  # no event end begins before this offset of _pending
        self._has_cr = False  # whether _pending holds a CR (most streams never send one)

    def push(self, chunk: bytes) -> bytes:
        """Take in a chunk; return the events it completed (``b""`` if none), or raise
        :class:`EventTooLong` when the unfinished event left over is over the limit."""
        pending = self._pending
        pending += chunk
        if not self._has_cr and b"\r" in chunk:
            self._has_cr = True
        cut = _last_end(pending, self._searched, False, self._has_cr)
        events = b""
        if cut:
            events = bytes(pending[1:cut])
            del pending[:cut - 1]  # the last byte of the cut stays, as context
            if self._has_cr:
                self._has_cr = b"\r" in pending
        # An end not yet seen may begin in the last bytes (a terminator split by the network).
        self._searched = max(1, len(pending) - 2)
        if len(pending) > self._limit and not events:  # events it completed go out first
            raise EventTooLong(self._limit)
        return events

    def close(self) -> tuple[bytes, bytes]:
        """The stream has ended: (events completed by its end, an unfinished tail)."""
        pending = bytes(self._pending)
        self._pending, self._searched, self._has_cr = bytearray(b"\n"), 1, False
        cut = _last_end(pending, 1, True, b"\r" in pending)
        if not cut:
            return b"", pending[1:]
        return pending[1:cut], pending[cut:]
