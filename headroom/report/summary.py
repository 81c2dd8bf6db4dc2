"""The per-(day, model, caller) sums rolled up to the grouping asked for (``--by``): a
:class:`Report` of :class:`Row` and :class:`Totals`.

The prompt-cache read share is :data:`CACHE_SHARE_FORMULA`: the log's ``input_tokens`` is the
*uncached* input for every format (Anthropic reports it so; for OpenAI the proxy logs
``prompt_tokens - cached_tokens``, see :class:`headroom.pricing.Usage`), so the denominator is
all the input the upstream billed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from headroom.report.aggregate import Aggregator, RetrievalSums

DIMENSIONS = ("day", "model", "caller")
CACHE_SHARE_FORMULA = "cache_read_tokens / (input_tokens + cache_read_tokens + cache_write_tokens)"


@dataclass(frozen=True)
class Totals:
    """Summed figures of a group of requests."""

    requests: int = 0
    errors: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    usd_spent: float = 0.0
    usd_saved: float = 0.0

    @property
    def tokens_saved(self) -> int:
        return self.tokens_before - self.tokens_after

    @property
    def saved_share(self) -> float | None:
        """Share of the tokens compression removed; ``None`` with no tokens."""
        return self.tokens_saved / self.tokens_before if self.tokens_before else None

    @property
    def cache_read_share(self) -> float | None:
        """:data:`CACHE_SHARE_FORMULA`; ``None`` when no input was reported."""
        billed = self.input_tokens + self.cache_read_tokens + self.cache_write_tokens
        return self.cache_read_tokens / billed if billed else None

    def plus(self, acc: Sequence[Any]) -> Totals:
        return Totals(*(a + b for a, b in zip(self.figures(), acc)))

    def figures(self) -> tuple[Any, ...]:
        return (self.requests, self.errors, self.tokens_before, self.tokens_after, self.input_tokens,
                self.output_tokens, self.cache_read_tokens, self.cache_write_tokens, self.usd_spent, self.usd_saved)

    def as_dict(self) -> dict[str, Any]:
        share, saved = self.cache_read_share, self.saved_share
        return {
            "requests": self.requests, "errors": self.errors,
            "tokens_before": self.tokens_before, "tokens_after": self.tokens_after, "tokens_saved": self.tokens_saved,
            "tokens_saved_share": None if saved is None else round(saved, 6),
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens, "cache_write_tokens": self.cache_write_tokens,
            "usd_spent": round(self.usd_spent, 8), "usd_saved": round(self.usd_saved, 8),
            "cache_read_share": None if share is None else round(share, 6),
        }


@dataclass(frozen=True)
class Row:
    key: tuple[str | None, ...]  # one value per dimension of Report.by
    totals: Totals


@dataclass(frozen=True)
class Report:
    by: tuple[str, ...]
    rows: list[Row]
    totals: Totals
    days: list[tuple[str, Totals]]  # per day, whatever ``by`` is (for the chart)
    lines: int = 0
    malformed: int = 0
    malformed_at: list[str] = field(default_factory=list)
    excluded: int = 0
    files: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    retrieval: RetrievalSums = field(default_factory=RetrievalSums)

    @property
    def tokens_saved_net(self) -> int:
        """Tokens compression saved, less those retrievals gave back to the model."""
        return self.totals.tokens_saved - self.retrieval.retrieved_tokens


def _sort_key(key: tuple[str | None, ...]) -> tuple[str, ...]:
    return tuple("" if part is None else part for part in key)


def summarise(agg: Aggregator, by: Sequence[str] = DIMENSIONS, files: Sequence[str] = ()) -> Report:
    """Roll the per-(day, model, caller) sums up to the dimensions ``by`` (in that order)."""
    unknown = [name for name in by if name not in DIMENSIONS]
    if unknown or not by or len(set(by)) != len(by):
        raise ValueError(f"--by takes distinct names among {', '.join(DIMENSIONS)}")
    positions = [DIMENSIONS.index(name) for name in by]
    grouped: dict[tuple[str | None, ...], Totals] = {}
    days: dict[str, Totals] = {}
    total = Totals()
    for fine, acc in agg.groups.items():
        key = tuple(fine[i] for i in positions)
        grouped[key] = grouped.get(key, Totals()).plus(acc)
        days[fine[0]] = days.get(fine[0], Totals()).plus(acc)
        total = total.plus(acc)
    rows = [Row(key, grouped[key]) for key in sorted(grouped, key=_sort_key)]
    return Report(
        by=tuple(by), rows=rows, totals=total, days=sorted(days.items()),
        lines=agg.lines, malformed=agg.malformed, excluded=agg.excluded,
        malformed_at=[f"{name}:{n}" if n else name for name, n in agg.malformed_at],
        files=tuple(files), since=agg.since, until=agg.until, retrieval=agg.retrieval,
    )
