"""Token usage as the upstream reports it, from a JSON answer or read off an SSE stream.

Figures are normalised into :class:`headroom.pricing.Usage` (uncached input, output, cache
reads, cache writes). Streams are parsed on the fly, touching only the few events that
carry a usage object. For OpenAI streams Headroom asks for the final usage chunk itself
when the client did not (:func:`ask_for_stream_usage`) and removes it again on the way
back, so the client sees exactly the stream it asked for.
"""

from __future__ import annotations

import re

import ujson

from headroom.pricing import Usage
from headroom.proxy.sse import split_events

# A usage *object* (not "usage": null, which OpenAI sends on every chunk when asked).
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_LINE_END = re.compile(rb"\r\n|\r|\n")  # SSE lines end in CRLF, LF or CR
#: A reported figure above this is no token count (and would overflow the cost arithmetic).
MAX_REPORTED_TOKENS = 2**53


def normalised(provider: str, reported: dict) -> Usage | None:
    """The upstream's usage object as a :class:`Usage`; ``None`` when its figures are not
    counts (strings, lists, negative or absurd numbers): an odd answer is relayed, never failed."""
    try:
        usage = Usage.from_anthropic(reported) if provider == "anthropic" else Usage.from_openai(reported)
    except (TypeError, ValueError, OverflowError, AttributeError):
        return None
    figures = (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
               usage.cache_write_1h_tokens)
    if not all(0 <= n <= MAX_REPORTED_TOKENS for n in figures):
        return None
    return usage


def usage_from_body(provider: str, payload: bytes) -> Usage | None:
    if not _USAGE_OBJECT.search(payload):
        return None
    try:
        body = ujson.loads(payload)
    except ValueError:
        return None
    reported = body.get("usage") if isinstance(body, dict) else None  # Responses bodies: at the top too
    if not isinstance(reported, dict):
        return None
    return normalised(provider, reported)


def ask_for_stream_usage(body: dict) -> bool:
    """Make an OpenAI streaming request report usage; True if the body had to change."""
    options = body.get("stream_options")
    if body.get("stream") is not True or (isinstance(options, dict) and options.get("include_usage")):
        return False
    body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return True


class StreamUsage:
    """Reads usage off SSE events as they pass.

    Anthropic spreads usage over ``message_start`` (input, cache) and ``message_delta``
    (output): the latest figure for each field wins. OpenAI reports it once, in a final
    chunk with no choices (the Responses API: in the response of ``response.completed``,
    ``.incomplete`` or ``.failed``); with ``strip_usage_chunk`` that chunk is removed from the
    events passed on (the client did not ask for it). Events are framed as the SSE spec
    says (:mod:`headroom.proxy.sse`), so LF, CRLF and CR streams read alike.
    """

    def __init__(self, provider: str, strip_usage_chunk: bool = False) -> None:
        self.provider = provider
        self.strip_usage_chunk = strip_usage_chunk
        self.reported: dict = {}
        self.seen = False

    @property
    def usage(self) -> Usage | None:
        if not self.seen:
            return None
        return normalised(self.provider, self.reported)

    def feed(self, events: bytes) -> bytes:
        """Take in complete events (as :class:`~headroom.proxy.sse.EventBuffer` hands them
        out); return the events to pass on to the client, each byte for byte."""
        if not _USAGE_OBJECT.search(events):
            return events
        kept = []
        for event in split_events(events):
            usage_only = _USAGE_OBJECT.search(event) is not None and self._read(event)
            if usage_only and self.strip_usage_chunk:
                continue
            kept.append(event)
        return b"".join(kept)

    def _read(self, event: bytes) -> bool:
        """Record the usage in one event; True if it was OpenAI's usage-only chunk."""
        data = _event_data(event)
        if data is None:
            return False
        try:
            body = ujson.loads(data)
        except ValueError:
            return False
        if not isinstance(body, dict):
            return False
        if self.provider == "anthropic":
            reported = body.get("usage")
            if reported is None and isinstance(body.get("message"), dict):
                reported = body["message"].get("usage")  # message_start nests it
            if isinstance(reported, dict):
                self.seen = True
                self.reported.update({k: v for k, v in reported.items() if v is not None})
            return False
        if isinstance(body.get("usage"), dict):
            self.seen = True
            self.reported = body["usage"]
            return not body.get("choices")
        response = body.get("response")  # Responses API: response.completed / .incomplete / .failed
        if isinstance(response, dict) and isinstance(response.get("usage"), dict):
            self.seen = True
            self.reported = response["usage"]
        return False


def _event_data(event: bytes) -> bytes | None:
    """An event's data as the SSE spec defines it: its ``data`` lines (one leading space
    dropped) joined by LF; ``None`` when it has none."""
    parts = []
    for line in _LINE_END.split(event):
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
        elif line == b"data":
            parts.append(b"")
    return b"\n".join(parts) if parts else None
