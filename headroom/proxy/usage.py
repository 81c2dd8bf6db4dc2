"""Token usage as the upstream reports it, from a JSON answer or read off an SSE stream.

Figures are normalised into :class:`headroom.pricing.Usage` (uncached input, output, cache
reads, cache writes). Streams are parsed on the fly, touching only the few events that
carry a usage object. Where usage sits and what its fields mean is the format's knowledge
(:class:`~headroom.formats.base.Format`); for Chat Completions streams Headroom asks for the
final usage chunk itself when the client did not (:func:`ask_for_stream_usage`) and removes
it again on the way back, so the client sees exactly the stream it asked for. ``fmt`` is a
:class:`~headroom.formats.base.Format` or its name.
"""

from __future__ import annotations

import ujson

from headroom.formats import Format, named
from headroom.formats.base import data_of
from headroom.formats.chat import ask_for_stream_usage
from headroom.pricing import Usage
from headroom.proxy.sse import split_events

__all__ = ["MAX_REPORTED_TOKENS", "StreamUsage", "ask_for_stream_usage", "normalised", "usage_from_body"]
#: A reported figure above this is no token count (and would overflow the cost arithmetic).
MAX_REPORTED_TOKENS = 2**53


def normalised(fmt: Format | str, reported: dict) -> Usage | None:
    """The upstream's usage object as a :class:`Usage`; ``None`` when its figures are not
    counts (strings, lists, negative or absurd numbers): an odd answer is relayed, never failed."""
    try:
        usage = named(fmt).usage(reported)
    except (TypeError, ValueError, OverflowError, AttributeError):
        return None
    figures = (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
               usage.cache_write_1h_tokens)
    if not all(0 <= n <= MAX_REPORTED_TOKENS for n in figures):
        return None
    return usage


def usage_from_body(fmt: Format | str, payload: bytes) -> Usage | None:
    fmt = named(fmt)
    if not fmt.usage_marker.search(payload):
        return None
    try:
        body = ujson.loads(payload)
    except ValueError:
        return None
    reported = fmt.reported_usage(body)  # any JSON value: a Gemini stream without SSE is an array
    if not isinstance(reported, dict):
        return None
    return normalised(fmt, reported)


class StreamUsage:
    """Reads usage off SSE events as they pass.

    The format reads each event that carries usage
    (:meth:`~headroom.formats.base.Format.stream_usage`): Anthropic spreads it over two
    events, OpenAI reports it once, in a final usage-only chunk; with ``strip_usage_chunk``
    that chunk is removed from the events passed on (the client did not ask for it). Events
    are framed as the SSE spec says (:mod:`headroom.proxy.sse`), so LF, CRLF and CR streams
    read alike.
    """

    def __init__(self, fmt: Format | str, strip_usage_chunk: bool = False) -> None:
        self.format = named(fmt)
        self.strip_usage_chunk = strip_usage_chunk
        self.reported: dict = {}
        self.seen = False

    @property
    def usage(self) -> Usage | None:
        if not self.seen:
            return None
        return normalised(self.format, self.reported)

    def feed(self, events: bytes) -> bytes:
        """Take in complete events (as :class:`~headroom.proxy.sse.EventBuffer` hands them
        out); return the events to pass on to the client, each byte for byte."""
        marker = self.format.usage_marker
        if not marker.search(events):
            return events
        kept = []
        for event in split_events(events):
            usage_only = marker.search(event) is not None and self._read(event)
            if usage_only and self.strip_usage_chunk:
                continue
            kept.append(event)
        return b"".join(kept)

    def _read(self, event: bytes) -> bool:
        """Record the usage in one event; True if it was a usage-only chunk."""
        data = data_of(event)
        if data is None:
            return False
        try:
            body = ujson.loads(data)
        except ValueError:
            return False
        if not isinstance(body, dict):
            return False
        reported, usage_only = self.format.stream_usage(body, self.reported)
        if reported is not None:
            self.seen = True
            self.reported = reported
        return usage_only
