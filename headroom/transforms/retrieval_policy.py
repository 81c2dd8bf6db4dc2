"""The retrieval policy: learn, per caller and tool, whether that tool's outputs may be cut.

Compression can only be as aggressive as its way back is good, and the way back has a price:
each retrieval is another upstream round trip and puts tokens back in the context. When the
model keeps fetching back what was cut from one tool's outputs (a user whose ``Bash`` output
is read line by line), cutting them saves nothing. So the proxy counts, per caller and tool
name (``Bash``, ``Grep``, ``exec_command`` …), the outputs it compressed lossily and the
retrievals of them; a tool retrieved more often than ``--retrieval-backoff`` of its lossy
compressions (0.2, over at least 10) is *backed off* for that caller for an hour: its new
outputs get lossless transforms only. Blocks sent before keep their memoised bytes (the
memo decides first), so the prompt cache's prefix never moves. The rule and the shared
counts: :mod:`headroom.state.tool_use`.

Entry points:

* :func:`note_retrieval` — for **every** retrieval the proxy answers: ``/v1/retrieve`` (which
  ``headroom mcp`` calls), and the retrieval tool loop. It counts the retrieval against the
  tool whose output it was (recorded beside the original, :func:`headroom.transforms.ccr.tool_key`),
  in ``headroom_retrievals_total{tool,outcome}`` and the ``/stats`` totals, with the tokens
  given back (savings are reported net of them). Never raises.
* :func:`note_compressions` — the pipeline's lossy compressions of new blocks.
* :func:`backoff_keys` / :func:`backed_off` — which tools the pipeline keeps lossless now.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

from headroom.observability import metrics
from headroom.state.keys import backoff_key
from headroom.state.store import StatsDelta, Store, StoreUnavailable
from headroom.state.tool_use import BackoffRule, ToolUse
from headroom.transforms import ccr, tokens
from headroom.transforms.retrieval import TOOL_NAME

log = logging.getLogger("headroom.pipeline")

Outcome = Literal["ok", "miss", "error"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "miss", "error")
UNKNOWN_TOOL = "unknown"  # no tool name (a block without one, or an original no longer known)
TRANSFORM = "policy:lossless"  # in a receipt: a new block kept lossless because its tool is backed off

_UNSAFE = re.compile(r"[^A-Za-z0-9._:/@+-]")
_TOOL_CHARS = 64


def tool_label(name: str | None) -> str:
    """The name a tool is counted under: its own, with characters that have no place in a store
    key, a metric label or a ``/stats`` field replaced, and at most 64 characters."""
    if not name:
        return UNKNOWN_TOOL
    return _UNSAFE.sub("_", name)[:_TOOL_CHARS]


def is_retrieval_tool(name: str | None) -> bool:
    """``headroom_retrieve`` itself, as the proxy declares it or as an MCP client names it
    (``mcp__headroom__headroom_retrieve``): its answers are what the model asked for, sent
    whole; cutting them again would make no sense and would move the prompt cache's prefix."""
    return name is not None and (name == TOOL_NAME or name.endswith("__" + TOOL_NAME))


@dataclass(frozen=True, slots=True)
class RetrievalNote:
    """What one retrieval counted as."""

    tool: str  # the tool whose output the original was (UNKNOWN_TOOL when not known)
    outcome: Outcome
    tokens: int  # tokens of the answer given back to the model (0 unless ok)
    backed_off: bool  # this retrieval sent the tool into a back-off for the caller


async def note_retrieval(store: Store, caller: str, key: str, outcome: Outcome, answer: str = "",
                         rule: BackoffRule | None = None) -> RetrievalNote:
    """Count one retrieval the proxy answered (see the module docstring). Never raises.

    ``caller``: the caller hash the retrieval was answered for; ``key``: the key asked for
    (as given: anything, for a miss); ``outcome``: ``ok`` (the original was found and
    answered), ``miss`` (unknown, expired, or another caller's key) or ``error`` (the store
    could not be asked); ``answer``: the text given back (its tokens are counted, for the
    savings net of retrievals); ``rule``: the deployment's (``PipelineOptions.backoff``).
    """
    rule = rule or BackoffRule()
    tool, started = UNKNOWN_TOOL, False
    used = tokens.count_tokens(answer) if outcome == "ok" and answer else 0
    try:
        if ccr.is_key(key) and outcome != "error":
            raw = await store.get(ccr.tool_key(caller, key))
            if raw is not None:
                tool = tool_label(raw.decode("utf-8", "replace"))
        if outcome == "ok" and tool != UNKNOWN_TOOL and rule.threshold > 0:
            started = bool(await store.count_tool_use(caller, {tool: ToolUse(retrieved=1)}, rule))
        counters = {f"retrievals:{tool}:{outcome}": 1.0, "retrieved_tokens": float(used)}
        if started:
            counters[f"backoffs:{tool}"] = 1.0
        await store.stats_record(StatsDelta(counters=counters, samples={}, recent=[]))
    except StoreUnavailable:
        metrics.store_unavailable()
    except Exception:  # counting must never fail the retrieval it counts
        log.exception("headroom: counting a retrieval failed")
    metrics.retrieval(tool, outcome, used)
    if started:
        metrics.backoff_started(tool)
        log.info("headroom: outputs of %s are retrieved often for caller %s: lossless only for %.0f s",
                 tool, caller, rule.period_s)
    return RetrievalNote(tool, outcome, used, started)


async def note_compressions(store: Store, caller: str, lossy: dict[str, int], rule: BackoffRule) -> list[str]:
    """Count the pipeline's new lossy compressions per tool; the tools this backed off.
    Raises :class:`StoreUnavailable` like every pipeline store call."""
    if not lossy or rule.threshold <= 0:
        return []
    started = await store.count_tool_use(caller, {tool: ToolUse(lossy=n) for tool, n in lossy.items()}, rule)
    if started:
        await store.stats_record(StatsDelta(counters={f"backoffs:{tool}": 1.0 for tool in started}, samples={},
                                            recent=[]))
        for tool in started:
            metrics.backoff_started(tool)
    return started


def backoff_keys(caller: str, tools: list[str], rule: BackoffRule) -> list[str]:
    """The flags to read with the memo (none when the policy is off)."""
    return [backoff_key(caller, tool) for tool in tools] if rule.threshold > 0 else []


def backed_off(tools: list[str], flags: list[bytes | None]) -> set[str]:
    """The tools among ``tools`` whose flag (read with :func:`backoff_keys`) is set."""
    return {tool for tool, flag in zip(tools, flags) if flag is not None}


__all__ = ["OUTCOMES", "TRANSFORM", "UNKNOWN_TOOL", "Outcome", "RetrievalNote", "backed_off", "backoff_keys",
           "is_retrieval_tool", "note_compressions", "note_retrieval", "tool_label"]
