"""Token totals of a request body, for receipts and context fitting.

Counts every string a model reads (system prompt, tool definitions, message texts, tool
inputs and results) and skips what it does not (ids, types, cache_control, signatures,
base64 images). Strings go through the process-wide count cache, and the pipeline seeds that
cache with the memoised counts of tool outputs, so a long conversation is not re-tokenised
every turn.
"""

from __future__ import annotations

from headroom.transforms.tokens import count_cached

_SKIP = frozenset(
    ("type", "id", "tool_use_id", "tool_call_id", "cache_control", "signature", "source",
     "image_url", "input_audio", "file", "data", "role", "citations")
)
MESSAGE_OVERHEAD = 4  # role and separators


def value_tokens(value) -> int:
    t = type(value)
    if t is str:
        return count_cached(value)
    if t is dict:
        return sum(value_tokens(v) for k, v in value.items() if k not in _SKIP)
    if t is list:
        return sum(value_tokens(v) for v in value)
    return 0


def fixed_tokens(body: dict) -> int:
    """System prompt and tool definitions (OpenAI system messages count as messages)."""
    return value_tokens(body.get("system")) + value_tokens(body.get("tools"))


def message_tokens(messages: list) -> list[int]:
    return [value_tokens(m) + MESSAGE_OVERHEAD for m in messages]
