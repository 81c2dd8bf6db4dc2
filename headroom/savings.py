"""Dollars saved by compression, priced at the rate the removed tokens would really have cost.

Pricing every removed token at the full input rate overstates savings badly once prompt
caching is on: a tool output re-sent on every turn of a conversation is billed as a cache
read (about a tenth of the input price at Anthropic, a half at OpenAI), not as fresh input.
So each compressed block's saving (its tokens before minus after, o200k counts) is priced by
where the block sits on this turn:

* **Re-sent block** (a memo hit: Headroom compressed it on an earlier turn and re-sends the
  same bytes) while the upstream's usage reports cache reads: it lies in the cached prefix,
  and without Headroom its original tokens would have been cache reads too → cache-read rate.
* **Block first compressed this turn** (or a re-sent one when nothing was read from the
  cache) that lies before an Anthropic ``cache_control`` breakpoint, while the usage reports
  cache writes: its original tokens would have been written to the cache → the cache-write
  rate of that breakpoint's ttl (5-minute, or ``"ttl": "1h"``).
* Anything else → the plain input rate. OpenAI caches prefixes automatically and has no
  breakpoints: new blocks are input, re-sent ones are cached tokens when its usage reports
  ``cached_tokens``.

The rates are those the request was billed at (long-context rates when its input crossed the
threshold). Turns dropped to fit the context window are not priced: without them the request
would not have fitted at all. No usage (an error, a broken stream) → nothing is claimed.

This is an estimate, not a bill: the counts are o200k tokens, not the provider's tokenizer;
the usage says *how many* tokens were read or written, not *which*, so a block's place is
inferred from the memo and the breakpoints (a re-sent block that was past the previous turn's
breakpoint is priced as a read although it was written again — the cheapest rate, so the
error understates the saving); and what the upstream would have cached without Headroom is
assumed to follow the same breakpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from headroom.pricing import Price, Usage

_BIG = 1 << 30  # a breakpoint on a whole content block covers all its parts


@dataclass(frozen=True, slots=True)
class BlockSaving:
    """One compressed tool output, as the savings arithmetic needs it."""

    tokens_saved: int  # o200k tokens before minus after (0: sent as it was)
    memo_hit: bool  # compressed on an earlier turn and re-sent byte for byte
    cache_ttl: str | None = None  # "5m" | "1h": an Anthropic cache_control breakpoint covers it; None: none does


def cache_ttls(messages: list, paths: Iterable[tuple]) -> dict[tuple, str | None]:
    """For each block path ``(message, content, part)`` of an Anthropic body: the ttl
    (``"5m"``/``"1h"``) of the first ``cache_control`` breakpoint at or after it, or None.

    Breakpoints on the system prompt or tools come before every message, so only those in
    messages (on a content block, or on a part inside a tool_result) can cover a block.
    """
    points: list[tuple[tuple[int, int, int], str]] = []
    for i, msg in enumerate(messages):
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            if not isinstance(block, dict):
                continue
            inner = block.get("content")
            if isinstance(inner, list):
                for k, part in enumerate(inner):
                    if isinstance(part, dict) and isinstance(part.get("cache_control"), dict):
                        points.append(((i, j, k), _ttl(part["cache_control"])))
            if isinstance(block.get("cache_control"), dict):
                points.append(((i, j, _BIG), _ttl(block["cache_control"])))
    result: dict[tuple, str | None] = {}
    for path in paths:
        i, j, k = path
        where = (i, j if j is not None else _BIG, k if k is not None else 0)
        result[path] = next((ttl for point, ttl in points if point >= where), None)
    return result


def _ttl(control: dict) -> str:
    return "1h" if control.get("ttl") == "1h" else "5m"


def rate_of(block: BlockSaving, usage: Usage, rates: Price) -> float:
    """USD per million tokens that this block's removed tokens would have been billed at."""
    if block.memo_hit and usage.cache_read_tokens > 0:
        return rates.cache_read
    if block.cache_ttl is not None and usage.cache_write_tokens + usage.cache_write_1h_tokens > 0:
        return rates.cache_write_1h if block.cache_ttl == "1h" else rates.cache_write
    return rates.input


def usd_saved(blocks: Sequence[BlockSaving], usage: Usage | None, price: Price) -> float:
    """What compression saved on one request, in USD (0 when the usage is unknown)."""
    if usage is None:
        return 0.0
    rates = price.for_input(usage.total_input_tokens)
    return sum(b.tokens_saved * rate_of(b, usage, rates) for b in blocks if b.tokens_saved > 0) / 1e6
