"""The retrieval policy's shared state: per caller and tool, how often its outputs were cut
lossily and how often the model fetched them back, and the back-off that follows.

A tool whose outputs the model keeps retrieving is one whose outputs compression cuts too
hard for this caller's work: every retrieval costs an upstream round trip and puts tokens
back. So when retrievals exceed :attr:`BackoffRule.threshold` of a tool's lossy compressions
(over at least :attr:`BackoffRule.min_compressions`), the tool is *backed off* for that
caller for :attr:`BackoffRule.period_s` (an hour): its new outputs get lossless transforms
only. Then the policy learns afresh from zero (retrievals of outputs cut before the
back-off do not count while it lasts: they say nothing about lossless outputs). Counts are
halved whenever compressions reach :attr:`BackoffRule.halve_at`, so recent behaviour weighs
most; an idle pair's counts expire after :attr:`BackoffRule.counts_ttl_s` (the originals'
TTL: a retrieval after that is impossible anyway).

Both stores implement :meth:`~headroom.state.store.Store.count_tool_use` with exactly these
semantics (:meth:`BackoffRule.backs_off` is the decision; the Redis script mirrors it).
Where the entries live: :mod:`headroom.state.keys`.
"""

from __future__ import annotations

from dataclasses import dataclass

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class BackoffRule:
    threshold: float = 0.2  # retrievals per lossy compression above which a tool backs off; 0: never
    min_compressions: int = 10  # lossy compressions counted before the ratio is trusted
    period_s: float = HOUR  # how long a backed-off tool's new outputs stay lossless
    counts_ttl_s: float = 24 * HOUR  # an idle (caller, tool)'s counts are forgotten after this
    halve_at: int = 200  # counts are halved when compressions reach this

    def backs_off(self, lossy: int, retrieved: int) -> bool:
        """Whether counts this high send the tool into a back-off."""
        return self.threshold > 0 and lossy >= self.min_compressions and retrieved > self.threshold * lossy

    def halved(self, lossy: int, retrieved: int) -> tuple[int, int]:
        """The counts to keep: halved once compressions reach :attr:`halve_at`."""
        if lossy >= self.halve_at:
            return lossy // 2, retrieved // 2
        return lossy, retrieved


@dataclass(frozen=True, slots=True)
class ToolUse:
    """What to add to one tool's counts."""

    lossy: int = 0  # outputs compressed lossily (an original stored for retrieval)
    retrieved: int = 0  # retrievals of such outputs that found their original


@dataclass(frozen=True, slots=True)
class Backoff:
    """A back-off in force: ``tool``'s new outputs are lossless for ``caller`` until ``until``."""

    caller: str  # the caller hash
    tool: str
    until: float  # UNIX seconds


MEMBER_SEP = "|"  # between caller hash and tool in the back-off index (never in either)


def index_member(caller: str, tool: str) -> str:
    return f"{caller}{MEMBER_SEP}{tool}"


def backoff_of(member: str, until_ms: float) -> Backoff:
    caller, _, tool = member.partition(MEMBER_SEP)
    return Backoff(caller, tool, until_ms / 1000.0)
