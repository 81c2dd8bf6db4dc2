"""The in-memory store: one worker's state, with the same semantics as the Redis store.

Everything runs synchronously on the event loop, so each method is atomic within its
worker; it is never unavailable. Every table is LRU-bounded (:class:`~headroom.state.lru.LRU`),
key/value entries and cached answers also expire.

**Bounded by bytes, not by entries.** What the proxy stores grows with the traffic: CCR
originals (up to the body limit each), memo entries, cached answers. A bound of entries
lets 100,000 of them reach gigabytes, so key/value entries and cached answers share one
LRU weighed in bytes (``max_bytes``, ``--store-max-mb``): key and value lengths plus
:data:`ENTRY_OVERHEAD`, Python's own cost of holding an entry. The least recently used
of them goes first, whichever kind it is. Losing one is always safe: an original that is
gone reads as expired, a memo entry that is gone is recomputed (the prefix guard keeps the
bytes a conversation already sent, see :mod:`headroom.transforms.prefix_guard`), a cached
answer that is gone is a cache miss. An entry heavier than a quarter of the bound is not
kept at all, so that one huge original cannot flush everything else.

The prefix guard's records (key kind ``sent``, a hundred bytes or so per block) are what
keeps a block's bytes when its memo entry is gone, so they must outlive memo entries; in
one recency order they would not (a block's memo entry and record are written and read
together). A record the LRU pushes out therefore gets a second life in a small LRU of its
own (a sixteenth of ``max_bytes``: tens of thousands of records), read like any entry.

The retrieval policy's counts live in a table of their own too (bounded by entries, with
their TTL): a byte-heavy burst of originals must not reset what the policy has learnt. Its
back-off flags are ordinary entries (the pipeline reads them with ``get_many``); losing one
only ends a back-off early.

Rate-limit buckets, budgets and the deployment secret are *never* evicted by weight: they
live in tables of their own (small fixed-size records, one per caller or per caller and
period), bounded by entries and by expiry, because forgetting a budget would let a caller
overspend and forgetting a bucket would refill it early.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from collections.abc import Callable

from headroom.state.budget import (
    BUDGET_SLACK_SECONDS,
    budget_micro,
    ms_up,
    period_bounds,
    settle_deltas,
    usd_to_micro_up,
)
from headroom.state.keys import (
    BACKOFF_INDEX_LIMIT,
    SENT_KIND,
    STATS_RECENT_LIMIT,
    STATS_SAMPLE_LIMIT,
    backoff_key,
    budget_prefix,
    cache_key,
    make_key,
    tool_use_key,
)
from headroom.state.lru import LRU
from headroom.state.store import (
    LIMIT_NAMES,
    Admission,
    CachePut,
    GuardRequest,
    GuardResult,
    Settlement,
    StatsDelta,
    StatsSnapshot,
    StoreHealth,
)
from headroom.state.tool_use import Backoff, BackoffRule, ToolUse, index_member


class _Bucket:
    """One caller's buckets: a level of None means "full" (never charged)."""

    __slots__ = ("expires", "r", "rt", "t", "tt")

    def __init__(self) -> None:
        self.r: float | None = None
        self.rt = 0.0
        self.t: float | None = None
        self.tt = 0.0
        self.expires = 0.0


#: What holding one key/value entry costs Python beyond the bytes of its key and value: the
#: key ``str`` and value ``bytes`` headers (49 + 33), the ``(value, expires)`` tuple and its
#: float (56 + 24), and the ordered dict's slot, index and list node. tracemalloc measured
#: 228 bytes over 20,000 entries (``tests/state/test_byte_bound.py`` keeps it honest).
ENTRY_OVERHEAD = 240
#: A cached answer also sits in the cache's own index of entries (measured: 294 in all).
CACHED_ANSWER_OVERHEAD = 300
_CACHE_PREFIX = cache_key("", "")[:-1]  # "hr:cache:"
_SENT_PREFIX = make_key(SENT_KIND, "", "")[:-1]  # "hr:sent:"

#: The default byte bound of a store built without one (``--store-max-mb`` sets the proxy's).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


def entry_weight(key: str, item: tuple[bytes | int, float | None]) -> int:
    """Bytes one key/value entry or cached answer holds, overhead included."""
    value = item[0]
    overhead = CACHED_ANSWER_OVERHEAD if key.startswith(_CACHE_PREFIX) else ENTRY_OVERHEAD
    return len(key) + (len(value) if isinstance(value, bytes) else 8) + overhead


def _refill(cap: int, level: float | None, ts: float, now: float) -> float:
    if level is None:
        return float(cap)
    return min(float(cap), level + max(0.0, now - ts) * cap / 60.0)


class MemoryStore:
    """Process-local store. ``max_bytes`` bounds key/value entries and cached answers
    together, by weight (:func:`entry_weight`); ``max_entries`` bounds each table by entries
    (key/value, buckets, budgets); ``cache_max_entries`` the response cache.

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
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._clock = clock
        self._now = time_source
        self._max_entries = max_entries
        # Everything evictable, by weight: key -> (value, expires at or None); cached answers
        # under their cache_key(...) (a namespace of their own), with their expiry. Prefix-guard
        # records pushed out of it live on in _records, a sixteenth of the bytes.
        records = max_bytes // 16
        self._data: LRU[str, tuple[bytes | int, float | None]] = LRU(
            max_bytes - records, weigh=entry_weight, on_evict=self._evicted)
        self._records: LRU[str, tuple[bytes | int, float | None]] = LRU(records, weigh=entry_weight)
        # The cached answers' keys, in the same recency order: their bound of entries.
        self._cache: LRU[str, bool] = LRU(cache_max_entries, on_evict=self._drop_cached)
        self._buckets: LRU[str, _Bucket] = LRU(max_entries)  # evicted = full again
        # budget key -> [spent micro-USD, expires]; insertion order ~ expiry order
        self._budgets: LRU[str, list[float]] = LRU(max_entries)
        self.cache_ttl = cache_ttl
        self._budget_slack = budget_slack
        self._secret: bytes | None = None
        # retrieval policy: tool_use_key -> [lossy, retrieved, expires (clock)]; back-offs in force
        self._tool_use: LRU[str, list[float]] = LRU(max_entries)
        self._backoffs: LRU[str, Backoff] = LRU(BACKOFF_INDEX_LIMIT)
        self._health = StoreHealth()
        self._counters: dict[str, float] = {}
        self._samples: dict[str, deque] = {}
        self._recent: deque = deque(maxlen=STATS_RECENT_LIMIT)

    def __len__(self) -> int:
        return len(self._data) - len(self._cache)

    @property
    def cache_max_entries(self) -> int:
        return self._cache.max_weight

    @property
    def max_bytes(self) -> int:
        return self._data.max_weight + self._records.max_weight

    @property
    def held_bytes(self) -> int:
        """Weight of the evictable entries held now (at most ``max_bytes``)."""
        return self._data.weight + self._records.weight

    def _evicted(self, key: str, item: tuple[bytes | int, float | None]) -> None:
        if key.startswith(_SENT_PREFIX):
            self._records.put(key, item)  # a second life: see the class docstring
        else:
            self._cache.pop(key)  # a no-op for key/value entries

    def _drop_cached(self, key: str, _value: bool) -> None:
        self._data.pop(key)

    def _drop(self, key: str) -> None:
        self._data.pop(key)
        self._cache.pop(key)
        self._records.pop(key)

    @property
    def healthy(self) -> bool:
        return True

    @property
    def health(self) -> StoreHealth:
        return self._health

    # -- key/value ----------------------------------------------------------

    def _live(self, key: str) -> bytes | int | None:
        item = self._data.get(key)
        if item is None:
            item = self._records.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= self._clock():
            self._drop(key)
            return None
        return value

    async def get(self, key: str) -> bytes | None:
        value = self._live(key)
        return value if isinstance(value, bytes) or value is None else str(value).encode()

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._put(key, (value, self._clock() + ttl if ttl else None))

    def _put(self, key: str, item: tuple[bytes | int, float | None]) -> None:
        if entry_weight(key, item) > self._data.max_weight // 4:
            self._drop(key)  # too heavy to keep: the old value must not linger either
            return
        self._records.pop(key)
        self._data.put(key, item)
        while len(self._data) - len(self._cache) > self._max_entries:
            self._evicted(*self._data.pop_oldest())

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [await self.get(k) for k in keys]

    async def set_many(self, items: dict[str, bytes], ttl: float | None = None) -> None:
        for key, value in items.items():
            await self.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        self._drop(key)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        current = self._live(key)
        value = (int(current) if current is not None else 0) + amount
        item = self._data.peek(key)
        expires = item[1] if item is not None else None
        if expires is None and ttl:
            expires = self._clock() + ttl
        self._put(key, (value, expires))
        return value

    # -- guards -------------------------------------------------------------

    def _bucket(self, caller: str, now: float) -> _Bucket:
        state = self._buckets.get(caller)  # (now the most recently used, if there)
        if state is None or state.expires <= now:  # expired only once full again
            return _Bucket()
        return state

    def _keep_bucket(self, caller: str, state: _Bucket) -> None:
        """Keep a bucket :meth:`_bucket` handed out: a new one is stored, one found in the
        table is already there (and already the most recently used)."""
        if self._buckets.peek(caller) is not state:
            self._buckets.put(caller, state)

    def _budget_spent(self, key: str, now: float) -> int:
        while (first := self._budgets.oldest()) is not None and first[1][1] <= now:
            self._budgets.pop_oldest()  # expired periods leave from the front
        entry = self._budgets.peek(key)
        return int(entry[0]) if entry else 0

    async def guard(self, req: GuardRequest) -> GuardResult:
        return self._guard(req)

    def _guard(self, req: GuardRequest) -> GuardResult:
        if not req.limited:
            return GuardResult.unguarded(req)
        now = self._now()
        rpm, tpm = max(req.rpm, 0), max(req.tpm, 0)
        failed, wait = 0, 0.0
        state = self._bucket(req.caller, now) if rpm > 0 or tpm > 0 else _Bucket()
        r = t = 0.0
        if rpm > 0:
            r = _refill(rpm, state.r, state.rt, now)
            if r < 1:
                w = (1 - r) * 60.0 / rpm
                if w > wait:
                    wait, failed = w, 1
        if tpm > 0:
            t = _refill(tpm, state.t, state.tt, now)
            need = min(max(req.tokens, 0), tpm)
            if t < need:
                w = (need - t) * 60.0 / tpm
                if w > wait:
                    wait, failed = w, 2
        budget = budget_micro(req.budget_usd)
        reserve = usd_to_micro_up(max(req.cost_usd, 0.0)) if budget else 0
        spent, reset, bkey, pend = 0, 0.0, "", 0.0  # bkey: set with a budget, read only then
        if budget:
            period_id, pend = period_bounds(req.period, now)
            reset = pend - now
            bkey = f"{budget_prefix(req.caller, req.budget_scope)}:{period_id}"
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
                self._keep_bucket(req.caller, state)
            if budget and reserve > 0:
                entry = self._budgets.peek(bkey)
                if entry is None:
                    entry = [0, 0.0]
                    self._budgets.put(bkey, entry)
                entry[0] += reserve
                entry[1] = pend + self._budget_slack
                spent = int(entry[0])

        return GuardResult(
            allowed=failed == 0,
            limit=LIMIT_NAMES[failed],
            retry_after=ms_up(wait),
            requests_remaining=math.floor(r) if rpm > 0 else None,
            requests_reset=ms_up((rpm - r) * 60.0 / rpm) if rpm > 0 else 0.0,
            tokens_remaining=max(0, math.floor(t)) if tpm > 0 else None,
            tokens_reset=ms_up((tpm - t) * 60.0 / tpm) if tpm > 0 else 0.0,
            budget_remaining_usd=(budget - spent) / 1e6 if budget else None,
            budget_reset=ms_up(reset),
            budget_key=bkey,
            request=req,
        )

    async def settle(self, result: GuardResult, actual_tokens: int, actual_cost_usd: float) -> None:
        self._settle(result, actual_tokens, actual_cost_usd)

    def _settle(self, result: GuardResult, actual_tokens: int, actual_cost_usd: float) -> None:
        tokens, cost = settle_deltas(result, actual_tokens, actual_cost_usd)
        now = self._now()
        req = result.request
        if tokens:
            tpm = req.tpm
            state = self._bucket(req.caller, now)
            t = _refill(tpm, state.t, state.tt, now) - tokens
            t = min(float(tpm), max(-float(tpm), t))
            state.t, state.tt = t, now
            state.expires = max(state.expires, now + (tpm - t) * 60.0 / tpm + 1.0)
            self._keep_bucket(req.caller, state)
        if cost and result.budget_key is not None:
            entry = self._budgets.peek(result.budget_key)
            if entry is not None and entry[1] > now:
                entry[0] = max(0, entry[0] + cost)

    # -- response cache -----------------------------------------------------

    async def cache_get(self, caller: str, key: str) -> bytes | None:
        return self._cache_get(caller, key)

    def _cache_get(self, caller: str, key: str) -> bytes | None:
        full = cache_key(caller, key)
        item = self._data.get(full)
        if item is None:
            return None
        expires = item[1]
        if expires is not None and expires <= self._clock():
            self._drop(full)
            return None
        self._cache.get(full)  # most recently used in both orders
        value = item[0]
        return value if isinstance(value, bytes) else None

    async def cache_put(self, caller: str, key: str, value: bytes) -> None:
        self._cache_put(caller, key, value)

    def _cache_put(self, caller: str, key: str, value: bytes) -> None:
        full = cache_key(caller, key)
        item = (value, self._clock() + self.cache_ttl)
        if entry_weight(full, item) > self._data.max_weight // 4:
            self._drop(full)
            return
        self._data.put(full, item)
        self._cache.put(full, True)

    async def admit(self, cache: tuple[str, str] | None, req: GuardRequest | None) -> Admission:
        cached = self._cache_get(*cache) if cache else None
        return Admission(cached, self._guard(req) if req is not None else None)

    async def settle_and_put(self, settles: list[Settlement], puts: list[CachePut]) -> None:
        for settlement in settles:
            self._settle(*settlement)
        for put in puts:
            self._cache_put(*put)

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

    # -- retrieval policy ---------------------------------------------------

    async def count_tool_use(self, caller: str, uses: dict[str, ToolUse], rule: BackoffRule) -> list[str]:
        clock, now = self._clock(), self._now()
        started: list[str] = []
        for tool, use in uses.items():
            if self._live(backoff_key(caller, tool)) is not None:
                continue  # backed off: nothing is learnt until it ends
            key = tool_use_key(caller, tool)
            counts = self._tool_use.get(key)
            if counts is None or counts[2] <= clock:
                counts = [0, 0, 0.0]
            lossy, retrieved = rule.halved(int(counts[0]) + use.lossy, int(counts[1]) + use.retrieved)
            if rule.backs_off(lossy, retrieved):
                until = now + rule.period_s
                self._put(backoff_key(caller, tool), (str(int(until * 1000)).encode(), clock + rule.period_s))
                self._tool_use.pop(key)
                self._backoffs.put(index_member(caller, tool), Backoff(caller, tool, until))
                started.append(tool)
            else:
                self._tool_use.put(key, [lossy, retrieved, clock + rule.counts_ttl_s])
        return started

    async def tool_backoffs(self, limit: int = 100) -> list[Backoff]:
        now = self._now()
        live: list[Backoff] = []
        for member in list(self._backoffs):
            backoff = self._backoffs.peek(member)
            if backoff is None or backoff.until <= now:
                self._backoffs.pop(member)
            else:
                live.append(backoff)
        return sorted(live, key=lambda b: (b.until, b.caller, b.tool))[:limit]

    # -- misc ---------------------------------------------------------------

    async def shared_secret(self) -> bytes:
        if self._secret is None:
            self._secret = secrets.token_bytes(32)
        return self._secret

    async def close(self) -> None:
        return None
