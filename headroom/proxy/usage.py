"""Token usage as the upstream reports it, from a JSON answer or read off an SSE stream.

Both providers report usage differently: Anthropic's ``input_tokens`` excludes cache reads
and writes, which come separately; OpenAI's ``prompt_tokens`` includes the cached part.
:class:`TokenUsage` holds the normalised figures: uncached input, output, cache read, cache write.
Streams are parsed on the fly, touching only the few events that carry usage.
"""

from __future__ import annotations

from dataclasses import dataclass

import ujson


@dataclass
class TokenUsage:
    input_tokens: int = 0  # uncached input
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    seen: bool = False  # the upstream reported usage at all

    @property
    def total_input(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


def _int(mapping: dict, key: str) -> int:
    value = mapping.get(key)
    return value if isinstance(value, int) else 0


def merge_anthropic(usage: TokenUsage, reported: dict) -> None:
    """Anthropic: later events repeat or update earlier counts, so the latest figure wins."""
    usage.seen = True
    for ours, theirs in (
        ("input_tokens", "input_tokens"),
        ("output_tokens", "output_tokens"),
        ("cache_read_tokens", "cache_read_input_tokens"),
        ("cache_write_tokens", "cache_creation_input_tokens"),
    ):
        if isinstance(reported.get(theirs), int):
            setattr(usage, ours, reported[theirs])


def merge_openai(usage: TokenUsage, reported: dict) -> None:
    usage.seen = True
    details = reported.get("prompt_tokens_details") or {}
    cached = _int(details, "cached_tokens") if isinstance(details, dict) else 0
    usage.input_tokens = max(0, _int(reported, "prompt_tokens") - cached)
    usage.cache_read_tokens = cached
    usage.output_tokens = _int(reported, "completion_tokens")


def usage_from_body(provider: str, payload: bytes) -> TokenUsage:
    usage = TokenUsage()
    if b'"usage"' not in payload:
        return usage
    try:
        body = ujson.loads(payload)
    except ValueError:
        return usage
    reported = body.get("usage") if isinstance(body, dict) else None
    if isinstance(reported, dict):
        (merge_anthropic if provider == "anthropic" else merge_openai)(usage, reported)
    return usage


class StreamUsage:
    """Reads usage off SSE events as they pass, without parsing events that carry none."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.usage = TokenUsage()

    def feed(self, events: bytes) -> None:
        if b'"usage"' not in events:
            return
        for event in events.split(b"\n\n"):
            if b'"usage"' not in event:
                continue
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    self._data(line[5:].strip())

    def _data(self, data: bytes) -> None:
        try:
            body = ujson.loads(data)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        if self.provider == "anthropic":
            reported = body.get("usage")
            if reported is None and isinstance(body.get("message"), dict):
                reported = body["message"].get("usage")  # message_start nests it
            if isinstance(reported, dict):
                merge_anthropic(self.usage, reported)
        elif isinstance(body.get("usage"), dict):
            merge_openai(self.usage, body["usage"])
