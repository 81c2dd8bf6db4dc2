"""The store interface every piece of shared state goes through, and the records it trades in.

:class:`~headroom.state.memory_store.MemoryStore` serves a single worker;
:class:`~headroom.state.redis_store.RedisStore` has the same methods and the same semantics
and serves many workers and instances. Where keys live: :mod:`headroom.state.keys`; money
and periods: :mod:`headroom.state.budget`.

Besides plain key/value operations the store offers the hot path's guards and the response
cache, each atomic and (on Redis) one round trip:

* :meth:`Store.admit` — before forwarding: the cache lookup and the guard together.
  The guard refills and checks the caller's request and token buckets and reserves the
  worst-case cost against the budget of the current UTC period; all or nothing. It returns
  a :class:`GuardResult` (allowed or which limit refused, retry-after, remaining and reset
  figures for the response headers).
* :meth:`Store.settle_and_put` — after answers: each settlement reconciles the token bucket
  with the tokens actually used and the budget with the actual cost; each cache put fills
  the exact-match response cache, partitioned by caller hash, LRU-bounded
  (``cache_max_entries``) with a TTL; many of both in one round trip.
* :meth:`Store.stats_record` / :meth:`Store.stats_read` — the global request statistics
  behind ``/health`` and ``/stats``.
* :meth:`Store.count_tool_use` / :meth:`Store.tool_backoffs` — the retrieval policy's
  counts per caller and tool, and the back-offs they lead to (:mod:`headroom.state.tool_use`).

Failure model: a store that cannot reach its backend raises :class:`StoreUnavailable`
(and only that) from any method; the proxy catches it and forwards unguarded (fail-open)
or answers an error (``--fail-closed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

from headroom.config import BudgetPeriod as Period
from headroom.config import BudgetScope
from headroom.state.tool_use import Backoff, BackoffRule, ToolUse


class StoreUnavailable(Exception):
    """The store's backend cannot be reached; the one exception any store method raises
    for an outage. Fail open: forward the request unguarded and count it."""


@dataclass(slots=True)
class StoreHealth:
    """Counters for metrics. ``outages``: healthy → unavailable transitions (one warning
    each); ``failed_ops``: calls that raised StoreUnavailable after trying the backend;
    ``skipped_ops``: calls refused at once during the back-off after a failure;
    ``script_reloads``: NOSCRIPT recoveries."""

    outages: int = 0
    failed_ops: int = 0
    skipped_ops: int = 0
    script_reloads: int = 0


class GuardRequest(NamedTuple):
    """What one request asks of the guards. A limit of 0 means "no such limit".

    ``tokens`` is the estimated input charged now against ``tpm``; ``cost_usd`` the
    worst-case cost (:func:`headroom.pricing.worst_case_cost`) reserved now against
    ``budget_usd`` for the current UTC ``period``. ``budget_scope`` "global" shares one
    budget among all callers, "key" gives each caller its own.

    This record and the two after it are made for every guarded request, so they are
    immutable named tuples: a frozen dataclass sets each field through ``object.__setattr__``
    and took five times as long to build (4.4 against 0.9 µs for eleven fields).
    """

    caller: str
    rpm: int = 0
    tpm: int = 0
    tokens: int = 0
    budget_usd: float = 0.0
    cost_usd: float = 0.0
    period: Period = "daily"
    budget_scope: BudgetScope = "global"

    @property
    def limited(self) -> bool:
        """Whether any limit applies (otherwise the store is not asked at all)."""
        return self.rpm > 0 or self.tpm > 0 or self.budget_usd > 0


#: ``GuardResult.limit`` by the scripts' numeric code (0: allowed).
LIMIT_NAMES = (None, "rpm", "tpm", "budget")


class GuardResult(NamedTuple):
    """The guards' verdict. Durations are seconds from now.

    ``limit`` says which limit refused ("rpm", "tpm" or "budget"; the one with the longest
    wait when several did), ``None`` when allowed; nothing was charged when refused.
    ``retry_after`` is how long until this same request could pass (0 when allowed).
    Remaining figures are after this request's charge (or current, when refused); ``None``
    for a limit that is not configured. ``*_reset``: until the bucket is full again or
    the budget period rolls over. ``budget_key`` identifies the reservation's period for
    :meth:`Store.settle`.
    """

    allowed: bool
    limit: str | None
    retry_after: float
    requests_remaining: int | None
    requests_reset: float
    tokens_remaining: int | None
    tokens_reset: float
    budget_remaining_usd: float | None
    budget_reset: float
    budget_key: str | None
    request: GuardRequest

    @classmethod
    def unguarded(cls, req: GuardRequest) -> GuardResult:
        """The verdict when no limit is configured: allowed, without touching the store."""
        return cls(True, None, 0.0, None, 0.0, None, 0.0, None, 0.0, None, req)


class Admission(NamedTuple):
    """What :meth:`Store.admit` found: a cached answer (or None) and the guards' verdict
    (None when no guard was asked for)."""

    cached: bytes | None
    guard: GuardResult | None


#: One settlement: the admitted verdict, the tokens actually counted, the actual cost.
Settlement = tuple[GuardResult, int, float]
#: One cache put: caller hash, cache key, encoded answer.
CachePut = tuple[str, str, bytes]


@dataclass(frozen=True, slots=True)
class StatsDelta:
    """What some requests add to the global statistics (workers batch theirs)."""

    counters: dict[str, float]  # added to running totals ("requests", "status:200", ...)
    samples: dict[str, list[float]]  # appended to bounded latency series ("latency_ms", ...)
    recent: list[bytes]  # JSON entries for the recent-requests list, oldest first


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    counters: dict[str, float]
    samples: dict[str, list[float]]
    recent: list[bytes]  # newest first


class Store(Protocol):
    """What the proxy and the pipeline use of a store, and no more. The stores offer the
    steps these combine too (``guard``, ``settle``, ``cache_get``, ``cache_put``, ``set``,
    ``delete``, ``incr``) and their health; the tests call those on the concrete classes.
    All methods may raise :class:`StoreUnavailable`."""

    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: list[str]) -> list[bytes | None]: ...

    async def set_many(self, items: dict[str, bytes], ttl: float | None = None) -> None: ...

    async def admit(self, cache: tuple[str, str] | None, req: GuardRequest | None) -> Admission:
        """The hot path's one round trip: ``cache_get(*cache)`` and ``guard(req)`` together.
        The guard is charged even when the cache hits; settle it with 0, 0 afterwards."""
        ...

    async def settle_and_put(self, settles: list[Settlement], puts: list[CachePut]) -> None:
        """After answers, one round trip: ``settle(*s)`` for each of ``settles`` and
        ``cache_put(*p)`` for each of ``puts`` (the proxy batches several requests' worth).
        ``settle(result, actual_tokens, actual_cost_usd)`` reconciles an allowed guard: the
        tokens as counted against tpm (the estimate was ``result.request.tokens``) and the
        actual cost (the reservation was ``result.request.cost_usd``); a refused result is
        ignored; 0, 0 releases a reservation for a request that never reached the upstream."""
        ...

    async def stats_record(self, delta: StatsDelta) -> None:
        """Add one request to the global statistics (one round trip)."""
        ...

    async def stats_read(self, series: tuple[str, ...]) -> StatsSnapshot: ...

    async def count_tool_use(self, caller: str, uses: dict[str, ToolUse], rule: BackoffRule) -> list[str]:
        """Add to each tool's counts for this caller (one round trip, atomic): a tool backed
        off now is left as it is; one whose counts then pass ``rule`` is backed off for
        ``rule.period_s`` (its flag set, its counts cleared). Returns the tools this call
        backed off, in the order given."""
        ...

    async def tool_backoffs(self, limit: int = 100) -> list[Backoff]:
        """The back-offs in force, for every caller, the soonest to end first (at most ``limit``)."""
        ...

    async def shared_secret(self) -> bytes:
        """The per-deployment HMAC secret for caller hashes, created once and then the
        same for every worker and instance sharing this store."""
        ...

    async def close(self) -> None: ...
