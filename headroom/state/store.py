"""The store interface every piece of shared state goes through.

Keys follow ``hr:{kind}:{callerhash}:{id}`` (see :func:`make_key`). Every entry has a TTL
or sits under an LRU bound, so nothing grows without limit. :class:`MemoryStore` serves a
single worker; :class:`~headroom.state.redis_store.RedisStore` has the same methods and
the same semantics and serves many workers and instances.

Besides plain key/value operations the store offers the two hot-path guards and the
response cache, each one atomic and (on Redis) one round trip:

* :meth:`Store.guard` — refill and check the caller's request and token buckets and
  reserve the worst-case cost against the budget of the current UTC period; all or
  nothing. Returns a :class:`GuardResult` (allowed or which limit refused, retry-after,
  remaining and reset figures for the response headers).
* :meth:`Store.settle` — after the response: reconcile the token bucket with the tokens
  actually used and the budget with the actual cost.
* :meth:`Store.cache_get` / :meth:`Store.cache_put` — exact-match response cache,
  partitioned by caller hash, LRU-bounded (``cache_max_entries``) with a TTL.

Failure model: a store that cannot reach its backend raises :class:`StoreUnavailable`
(and only that) from any method; the proxy catches it and forwards unguarded (fail-open)
or answers an error (``--fail-closed``). ``healthy`` and ``stats`` feed health and metrics.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Literal, Protocol

Period = Literal["hourly", "daily", "monthly"]
PERIOD_CODES: dict[str, str] = {"hourly": "h", "daily": "d", "monthly": "m"}
BudgetScope = Literal["global", "key"]

#: Budget counters live this long past the end of their period, so that a request
#: reserved just before the rollover can still settle against its own period.
BUDGET_SLACK_SECONDS = 900.0
#: Where the cache's LRU index lives (one index for every partition: one global bound).
CACHE_INDEX_KEY = "hr:cache:_all:lru"
#: The per-deployment HMAC secret shared by every worker and instance (see shared_secret).
SECRET_KEY = "hr:meta:_all:secret"


def make_key(kind: str, caller: str, ident: str) -> str:
    """Build a namespaced store key; ``caller`` is already a hash, never an API key."""
    return f"hr:{kind}:{caller}:{ident}"


class StoreUnavailable(Exception):
    """The store's backend cannot be reached; the one exception any store method raises
    for an outage. Fail open: forward the request unguarded and count it."""


@dataclass(slots=True)
class StoreStats:
    """Counters for metrics. ``outages``: healthy → unavailable transitions (one warning
    each); ``failed_ops``: calls that raised StoreUnavailable after trying the backend;
    ``skipped_ops``: calls refused at once during the back-off after a failure;
    ``script_reloads``: NOSCRIPT recoveries."""

    outages: int = 0
    failed_ops: int = 0
    skipped_ops: int = 0
    script_reloads: int = 0


@dataclass(frozen=True, slots=True)
class GuardRequest:
    """What one request asks of the guards. A limit of 0 means "no such limit".

    ``tokens`` is the estimated input charged now against ``tpm``; ``cost_usd`` the
    worst-case cost (:func:`headroom.pricing.worst_case_cost`) reserved now against
    ``budget_usd`` for the current UTC ``period``. ``budget_scope`` "global" shares one
    budget among all callers, "key" gives each caller its own.
    """

    caller: str
    rpm: int = 0
    tpm: int = 0
    tokens: int = 0
    budget_usd: float = 0.0
    cost_usd: float = 0.0
    period: Period = "daily"
    budget_scope: BudgetScope = "global"


@dataclass(frozen=True, slots=True)
class GuardResult:
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


LIMIT_NAMES = (None, "rpm", "tpm", "budget")


@dataclass(frozen=True, slots=True)
class Admission:
    """What :meth:`Store.admit` found: a cached answer (or None) and the guards' verdict
    (None when no guard was asked for)."""

    cached: bytes | None
    guard: GuardResult | None


#: Global request statistics (every worker and instance adds to the same keys).
STATS_COUNTERS_KEY = "hr:stats:_all:counters"
STATS_SAMPLES_KEY = "hr:stats:_all:samples:{name}"
STATS_RECENT_KEY = "hr:stats:_all:recent"
STATS_TTL_SECONDS = 30 * 24 * 3600  # refreshed on every write: idle deployments age out
STATS_SAMPLE_LIMIT = 10_000  # latency samples kept per series (the most recent)
STATS_RECENT_LIMIT = 50


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
    """What every store offers. All methods may raise :class:`StoreUnavailable`."""

    @property
    def healthy(self) -> bool: ...

    @property
    def stats(self) -> StoreStats: ...

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    async def get_many(self, keys: list[str]) -> list[bytes | None]: ...

    async def set_many(self, items: dict[str, bytes], ttl: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount``; ``ttl`` (seconds) is set only when the key has no expiry yet."""
        ...

    async def guard(self, req: GuardRequest) -> GuardResult: ...

    async def settle(self, result: GuardResult, actual_tokens: int, actual_cost_usd: float) -> None:
        """Reconcile an allowed guard: ``actual_tokens`` as counted against tpm (the
        estimate was ``result.request.tokens``) and the actual cost (the reservation was
        ``result.request.cost_usd``). A refused result is ignored. To release a
        reservation for a request that never reached the upstream, settle with 0, 0."""
        ...

    async def cache_get(self, caller: str, key: str) -> bytes | None: ...

    async def cache_put(self, caller: str, key: str, value: bytes) -> None: ...

    async def admit(self, cache: tuple[str, str] | None, req: GuardRequest | None) -> Admission:
        """The hot path's one round trip: ``cache_get(*cache)`` and ``guard(req)`` together.
        The guard is charged even when the cache hits; settle it with 0, 0 afterwards."""
        ...

    async def finish(self, settles: list[tuple[GuardResult, int, float]],
                     puts: list[tuple[str, str, bytes]]) -> None:
        """After answers, one round trip: ``settle(*s)`` for each of ``settles`` and
        ``cache_put(*p)`` for each of ``puts`` (the proxy batches several requests' worth)."""
        ...

    async def stats_record(self, delta: StatsDelta) -> None:
        """Add one request to the global statistics (one round trip)."""
        ...

    async def stats_read(self, series: tuple[str, ...]) -> StatsSnapshot: ...

    async def shared_secret(self) -> bytes:
        """The per-deployment HMAC secret for caller hashes, created once and then the
        same for every worker and instance sharing this store."""
        ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------------------
# Helpers shared by both implementations
# ---------------------------------------------------------------------------


def usd_to_micro_up(usd: float) -> int:
    """USD → integer micro-dollars, rounded up (reservations)."""
    return math.ceil(round(usd * 1e6, 3))


def usd_to_micro_down(usd: float) -> int:
    """USD → integer micro-dollars, rounded down (budgets)."""
    return math.floor(round(usd * 1e6, 3))


_PERIOD_CACHE: dict[tuple[str, int], tuple[str, float]] = {}


def period_bounds(period: str, now: float) -> tuple[str, float]:
    """The UTC budget period containing ``now`` (epoch seconds): its id
    (``2025-01-15T13`` / ``2025-01-15`` / ``2025-01``) and its end (epoch seconds)."""
    hour = math.floor(now) // 3600  # every period boundary is an hour boundary
    hit = _PERIOD_CACHE.get((period, hour))
    if hit is None:
        if len(_PERIOD_CACHE) > 64:
            _PERIOD_CACHE.clear()
        hit = _PERIOD_CACHE[(period, hour)] = _period_bounds(period, hour * 3600)
    return hit


def _period_bounds(period: str, secs: int) -> tuple[str, float]:
    dt = datetime.fromtimestamp(secs, timezone.utc)
    if period == "hourly":
        return dt.strftime("%Y-%m-%dT%H"), float((secs // 3600 + 1) * 3600)
    if period == "daily":
        return dt.strftime("%Y-%m-%d"), float((secs // 86400 + 1) * 86400)
    if period == "monthly":
        year, month = (dt.year + 1, 1) if dt.month == 12 else (dt.year, dt.month + 1)
        return dt.strftime("%Y-%m"), datetime(year, month, 1, tzinfo=timezone.utc).timestamp()
    raise ValueError(f"unknown budget period {period!r}; expected hourly, daily or monthly")


def budget_prefix(req: GuardRequest) -> str:
    """``hr:budget:{global|callerhash}`` — the period id is appended as the last part."""
    return f"hr:budget:{req.caller if req.budget_scope == 'key' else 'global'}"


def bucket_key(caller: str) -> str:
    return make_key("rl", caller, "b")


def cache_key(caller: str, key: str) -> str:
    return make_key("cache", caller, key)


def needs_guard(req: GuardRequest) -> bool:
    return req.rpm > 0 or req.tpm > 0 or req.budget_usd > 0


def unguarded(req: GuardRequest) -> GuardResult:
    """The verdict when no limit is configured: allowed, without touching the store."""
    return GuardResult(True, None, 0.0, None, 0.0, None, 0.0, None, 0.0, None, req)


def needs_settle(result: GuardResult, actual_tokens: int, actual_cost_usd: float) -> tuple[int, int]:
    """(token delta, cost delta in micro-USD) of a settle; (0, 0) when there is nothing to do."""
    if not result.allowed:
        return 0, 0
    req = result.request
    tokens = actual_tokens - max(req.tokens, 0) if req.tpm > 0 else 0
    cost = 0
    if result.budget_key is not None:
        cost = round(max(actual_cost_usd, 0.0) * 1e6) - usd_to_micro_up(req.cost_usd)
    return tokens, cost


# ---------------------------------------------------------------------------
# In-memory implementation
# ---------------------------------------------------------------------------


class _Bucket:
    """One caller's buckets in memory: a level of None means "full" (never charged)."""

    __slots__ = ("r", "rt", "t", "tt", "expires")

    def __init__(self) -> None:
        self.r: float | None = None
        self.rt = 0.0
        self.t: float | None = None
        self.tt = 0.0
        self.expires = 0.0


class MemoryStore:
    """Process-local store: an LRU-bounded dict whose entries may carry an expiry time,
    plus LRU-bounded buckets, budgets and response cache with the same semantics as
    :class:`~headroom.state.redis_store.RedisStore`. Everything runs synchronously on
    the event loop, so each method is atomic within its worker. Never unavailable.

    ``clock`` (monotonic seconds) times TTLs; ``time_source`` (epoch seconds) times
    buckets and budget periods; both are injectable for tests.
    """

    def __init__(
        self,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        *,
        cache_ttl: float = 300.0,
        cache_max_entries: int = 10_000,
        time_source: Callable[[], float] = time.time,
        budget_slack: float = BUDGET_SLACK_SECONDS,
    ) -> None:
        self._data: OrderedDict[str, tuple[bytes | int, float | None]] = OrderedDict()
        self._max_entries = max_entries
        self._clock = clock
        self._now = time_source
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        # budget key -> [spent micro-USD, expires]; insertion order ~ expiry order
        self._budgets: OrderedDict[str, list[float]] = OrderedDict()
        self._cache: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self.cache_ttl = cache_ttl
        self.cache_max_entries = cache_max_entries
        self._budget_slack = budget_slack
        self._secret: bytes | None = None
        self._stats = StoreStats()
        self._counters: dict[str, float] = {}
        self._samples: dict[str, deque] = {}
        self._recent: deque = deque(maxlen=STATS_RECENT_LIMIT)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def healthy(self) -> bool:
        return True

    @property
    def stats(self) -> StoreStats:
        return self._stats

    # -- key/value ----------------------------------------------------------

    def _live(self, key: str):
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= self._clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def _put(self, key: str, value, ttl: float | None) -> None:
        expires = self._clock() + ttl if ttl else None
        self._data[key] = (value, expires)
        self._data.move_to_end(key)
        while len(self._data) > self._max_entries:
            self._data.popitem(last=False)

    async def get(self, key: str) -> bytes | None:
        value = self._live(key)
        return value if isinstance(value, bytes) or value is None else str(value).encode()

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._put(key, value, ttl)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [await self.get(k) for k in keys]

    async def set_many(self, items: dict[str, bytes], ttl: float | None = None) -> None:
        for key, value in items.items():
            self._put(key, value, ttl)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        current = self._live(key)
        value = (int(current) if current is not None else 0) + amount
        expires = self._data[key][1] if key in self._data else None
        if expires is None and ttl:
            expires = self._clock() + ttl
        self._data[key] = (value, expires)
        self._data.move_to_end(key)
        while len(self._data) > self._max_entries:
            self._data.popitem(last=False)
        return value

    # -- guards -------------------------------------------------------------

    def _bucket(self, caller: str, now: float) -> _Bucket:
        state = self._buckets.get(caller)
        if state is None or state.expires <= now:  # expired only once full again
            return _Bucket()
        return state

    def _keep(self, caller: str, state: _Bucket) -> None:
        self._buckets[caller] = state
        self._buckets.move_to_end(caller)
        while len(self._buckets) > self._max_entries:  # evicted = full: least recently used first
            self._buckets.popitem(last=False)

    @staticmethod
    def _refill(cap: int, level: float | None, ts: float, now: float) -> float:
        if level is None:
            return float(cap)
        return min(float(cap), level + max(0.0, now - ts) * cap / 60.0)

    def _budget_spent(self, key: str, now: float) -> int:
        while self._budgets:  # expired periods leave from the front
            first_key, first = next(iter(self._budgets.items()))
            if first[1] > now:
                break
            del self._budgets[first_key]
        entry = self._budgets.get(key)
        return int(entry[0]) if entry else 0

    async def guard(self, req: GuardRequest) -> GuardResult:
        if not needs_guard(req):
            return unguarded(req)
        now = self._now()
        rpm, tpm = max(req.rpm, 0), max(req.tpm, 0)
        failed, wait = 0, 0.0
        state = self._bucket(req.caller, now) if rpm > 0 or tpm > 0 else _Bucket()
        r = t = 0.0
        if rpm > 0:
            r = self._refill(rpm, state.r, state.rt, now)
            if r < 1:
                w = (1 - r) * 60.0 / rpm
                if w > wait:
                    wait, failed = w, 1
        if tpm > 0:
            t = self._refill(tpm, state.t, state.tt, now)
            need = min(max(req.tokens, 0), tpm)
            if t < need:
                w = (need - t) * 60.0 / tpm
                if w > wait:
                    wait, failed = w, 2
        # A positive budget below one micro-dollar still means "a budget", never "no limit".
        budget = max(1, usd_to_micro_down(req.budget_usd)) if req.budget_usd > 0 else 0
        reserve = usd_to_micro_up(max(req.cost_usd, 0.0)) if budget else 0
        spent, reset, bkey, pend = 0, 0.0, None, 0.0
        if budget:
            period_id, pend = period_bounds(req.period, now)
            reset = pend - now
            bkey = f"{budget_prefix(req)}:{period_id}"
            spent = self._budget_spent(bkey, now)
            if spent + reserve > budget and reset >= wait:
                wait, failed = reset, 3

        if failed == 0:
            wait = 0.0
            if rpm > 0 or tpm > 0:
                ttl = 0.0
                if rpm > 0:
                    r -= 1
                    state.r, state.rt = r, now
                    ttl = (rpm - r) * 60.0 / rpm
                if tpm > 0:
                    t = max(t - max(req.tokens, 0), -float(tpm))
                    state.t, state.tt = t, now
                    ttl = max(ttl, (tpm - t) * 60.0 / tpm)
                state.expires = max(state.expires, now + ttl + 1.0)
                self._keep(req.caller, state)
            if budget and reserve > 0:
                entry = self._budgets.get(bkey)
                if entry is None:
                    entry = self._budgets[bkey] = [0, 0.0]
                entry[0] += reserve
                entry[1] = pend + self._budget_slack
                spent = int(entry[0])
                while len(self._budgets) > self._max_entries:
                    self._budgets.popitem(last=False)

        return GuardResult(
            allowed=failed == 0,
            limit=LIMIT_NAMES[failed],
            retry_after=_ms_up(wait),
            requests_remaining=math.floor(r) if rpm > 0 else None,
            requests_reset=_ms_up((rpm - r) * 60.0 / rpm) if rpm > 0 else 0.0,
            tokens_remaining=max(0, math.floor(t)) if tpm > 0 else None,
            tokens_reset=_ms_up((tpm - t) * 60.0 / tpm) if tpm > 0 else 0.0,
            budget_remaining_usd=(budget - spent) / 1e6 if budget else None,
            budget_reset=_ms_up(reset),
            budget_key=bkey,
            request=req,
        )

    async def settle(self, result: GuardResult, actual_tokens: int, actual_cost_usd: float) -> None:
        tokens, cost = needs_settle(result, actual_tokens, actual_cost_usd)
        now = self._now()
        req = result.request
        if tokens:
            tpm = req.tpm
            state = self._bucket(req.caller, now)
            t = self._refill(tpm, state.t, state.tt, now) - tokens
            t = min(float(tpm), max(-float(tpm), t))
            state.t, state.tt = t, now
            state.expires = max(state.expires, now + (tpm - t) * 60.0 / tpm + 1.0)
            self._keep(req.caller, state)
        if cost and result.budget_key is not None:
            entry = self._budgets.get(result.budget_key)
            if entry is not None and entry[1] > now:
                entry[0] = max(0, entry[0] + cost)

    # -- response cache -----------------------------------------------------

    async def cache_get(self, caller: str, key: str) -> bytes | None:
        full = cache_key(caller, key)
        item = self._cache.get(full)
        if item is None:
            return None
        if item[1] <= self._clock():
            del self._cache[full]
            return None
        self._cache.move_to_end(full)
        return item[0]

    async def cache_put(self, caller: str, key: str, value: bytes) -> None:
        full = cache_key(caller, key)
        self._cache[full] = (value, self._clock() + self.cache_ttl)
        self._cache.move_to_end(full)
        while len(self._cache) > self.cache_max_entries:
            self._cache.popitem(last=False)

    async def admit(self, cache: tuple[str, str] | None, req: GuardRequest | None) -> Admission:
        cached = await self.cache_get(*cache) if cache else None
        return Admission(cached, await self.guard(req) if req is not None else None)

    async def finish(self, settles: list[tuple[GuardResult, int, float]],
                     puts: list[tuple[str, str, bytes]]) -> None:
        for args in settles:
            await self.settle(*args)
        for args in puts:
            await self.cache_put(*args)

    # -- statistics ---------------------------------------------------------

    async def stats_record(self, delta: StatsDelta) -> None:
        for name, amount in delta.counters.items():
            self._counters[name] = self._counters.get(name, 0) + amount
        for name, values in delta.samples.items():
            self._samples.setdefault(name, deque(maxlen=STATS_SAMPLE_LIMIT)).extend(values)
        self._recent.extendleft(delta.recent)

    async def stats_read(self, series: tuple[str, ...]) -> StatsSnapshot:
        return StatsSnapshot(
            counters=dict(self._counters),
            samples={name: list(reversed(self._samples.get(name, ()))) for name in series},  # newest first
            recent=list(self._recent),
        )

    # -- misc ---------------------------------------------------------------

    async def shared_secret(self) -> bytes:
        if self._secret is None:
            self._secret = secrets.token_bytes(32)
        return self._secret

    async def close(self) -> None:
        return None


def _ms_up(seconds: float) -> float:
    """Round a duration up to whole milliseconds, as the Redis scripts do."""
    return math.ceil(seconds * 1000 - 1e-6) / 1000 if seconds > 0 else 0.0
