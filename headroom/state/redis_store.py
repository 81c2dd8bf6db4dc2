"""The Redis store: the same interface and semantics as :class:`MemoryStore`, shared by
every worker and every instance pointed at the same Redis.

* One pipelined connection per worker (:mod:`headroom.state.resp`: hiredis packs and
  parses, every concurrent request shares the socket); ``redis://``, ``rediss://`` (TLS),
  ``unix://`` and ``redis+sentinel://`` (:mod:`headroom.state.sentinel`) URLs. redis-py
  supplies the exception classes.
* Guards, settle and the cache are Lua scripts (:mod:`headroom.state.scripts`), called by
  ``EVALSHA`` with locally computed SHA1s: one round trip each. ``NOSCRIPT`` (Redis
  restarted or ``SCRIPT FLUSH``) → ``SCRIPT LOAD`` and call again, once.
* Outages: any Redis failure surfaces as :class:`StoreUnavailable`, never as a redis-py
  exception. Every call is bounded by a timeout, and nothing is retried blindly.
  On a connection failure the store is marked unhealthy, ONE warning is logged and
  ``health.outages`` rises; for ``retry_interval`` seconds every call then fails at once
  without touching the network (``health.skipped_ops``); after that a single call probes
  Redis while the others keep failing fast; the first success marks it healthy again
  (logged at info). No restart and no new store object are needed.
* Failover: a ``READONLY`` reply (the primary was demoted) is an outage like any other, and
  the client drops that connection, so the probe reconnects: through the sentinels to the
  new primary, or to whatever address the host name resolves to now.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, OutOfMemoryError, ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from headroom.state.budget import (
    BUDGET_SLACK_SECONDS,
    PERIOD_CODES,
    budget_micro,
    settle_deltas,
    usd_to_micro_up,
)
from headroom.state.keys import (
    BACKOFF_INDEX_KEY,
    BACKOFF_INDEX_LIMIT,
    CACHE_INDEX_KEY,
    SECRET_KEY,
    STATS_COUNTERS_KEY,
    STATS_RECENT_KEY,
    STATS_RECENT_LIMIT,
    STATS_SAMPLE_LIMIT,
    STATS_SAMPLES_KEY,
    STATS_TTL_SECONDS,
    backoff_key,
    bucket_key,
    budget_prefix,
    cache_key,
    tool_use_key,
)
from headroom.state.redis_url import redact_url  # also re-exported here, where it was first
from headroom.state.resp import RespClient
from headroom.state.scripts import SCRIPTS, SHAS
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
    StoreUnavailable,
)
from headroom.state.tool_use import Backoff, BackoffRule, ToolUse, backoff_of, index_member

log = logging.getLogger("headroom.state")

# Errors that mean "Redis is not serving us": back off and log once. A read-only replica
# (failover in progress) and an out-of-memory Redis count as outages too.
_OUTAGE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError,
                  ReadOnlyError, OutOfMemoryError)
_SEEN_ERRORS_MAX = 32


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisStore:
    """Shared state in Redis. Create one per worker (it owns a connection); call
    :meth:`close` on shutdown.

    ``time_source`` (epoch seconds) replaces Redis ``TIME`` in the scripts; leave it
    ``None`` outside tests so that every instance uses the same clock (Redis's).
    ``clock`` (monotonic seconds) times the outage back-off; injectable so that tests move
    past ``retry_interval`` without sleeping through it.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_ttl: float = 300.0,
        cache_max_entries: int = 10_000,
        socket_timeout: float = 0.25,
        connect_timeout: float = 0.25,
        retry_interval: float = 1.0,
        budget_slack: float = BUDGET_SLACK_SECONDS,
        time_source: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.cache_ttl = cache_ttl
        self.cache_max_entries = cache_max_entries
        self.retry_interval = retry_interval
        self._budget_slack_ms = str(int(budget_slack * 1000))
        self._time_source = time_source
        self._clock = clock
        self._client = RespClient(url, timeout=socket_timeout, connect_timeout=connect_timeout)
        self._healthy = True
        self._retry_at = 0.0
        self._down_since = 0.0
        self._probing = False
        self._seen_errors: set[str] = set()
        self._health = StoreHealth()

    # -- health -------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def health(self) -> StoreHealth:
        return self._health

    def _admit_call(self) -> bool:
        """Whether this call may touch Redis; raises at once during the back-off.
        Returns True when this call is the one probe of an unhealthy Redis."""
        if self._healthy:
            return False
        if self._probing or self._clock() < self._retry_at:
            self._health.skipped_ops += 1
            raise StoreUnavailable(f"Redis at {redact_url(self.url)} is unavailable")
        self._probing = True
        return True

    def _failed(self, exc: BaseException, outage: bool) -> StoreUnavailable:
        self._health.failed_ops += 1
        if not outage:
            # not an outage (a script error, a wrong-type key…): say so once per kind
            kind = f"{type(exc).__name__}: {str(exc)[:80]}"
            if kind not in self._seen_errors and len(self._seen_errors) < _SEEN_ERRORS_MAX:
                self._seen_errors.add(kind)
                log.warning("Redis at %s refused a state operation (%s)", redact_url(self.url), kind)
        if outage:
            self._retry_at = self._clock() + self.retry_interval
            if self._healthy:
                self._healthy = False
                self._down_since = self._clock()
                self._health.outages += 1
                log.warning(
                    "Redis at %s is unavailable (%s: %s); state operations fail fast and are "
                    "retried every %.1fs until it returns",
                    redact_url(self.url), type(exc).__name__, exc, self.retry_interval,
                )
        return StoreUnavailable(f"Redis at {redact_url(self.url)}: {type(exc).__name__}: {exc}")

    def _recovered(self) -> None:
        if not self._healthy:
            self._healthy = True
            log.info("Redis at %s is back after %.1fs", redact_url(self.url), self._clock() - self._down_since)

    async def _call(self, operation: Callable[[], Awaitable[Any]]) -> Any:
        """Run one round trip with the outage handling described in the module docstring."""
        probe = self._admit_call()
        try:
            result = await operation()
        except _OUTAGE_ERRORS as exc:
            raise self._failed(exc, True) from exc
        except RedisError as exc:
            raise self._failed(exc, False) from exc
        finally:
            if probe:
                self._probing = False
        if probe or not self._healthy:
            self._recovered()
        return result

    async def _run(self, *args: Any) -> Any:
        """One Redis command."""
        return await self._call(lambda: self._client.execute(*args))

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA a named script (see :meth:`_scripts` for NOSCRIPT)."""
        return (await self._scripts([(name, keys, args)]))[0]

    async def _pipeline(self, commands: list[tuple[Any, ...]], transaction: bool) -> list[Any]:
        """Several commands in one round trip (MULTI/EXEC when ``transaction``)."""

        run = self._client.transaction if transaction else self._client.execute_many
        return await self._call(lambda: run(commands))

    def _now_arg(self) -> str:
        return "" if self._time_source is None else repr(self._time_source() * 1000.0)

    async def connect(self) -> None:
        """Optional start-up check: PING and load every script (raises StoreUnavailable)."""
        await self._run("PING")
        for body in SCRIPTS.values():
            await self._run("SCRIPT", "LOAD", body)

    # -- key/value ----------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return await self._run("GET", key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        if ttl:
            await self._run("SET", key, value, "PX", max(1, int(ttl * 1000)))
        else:
            await self._run("SET", key, value)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        return list(await self._run("MGET", *keys))

    async def set_many(self, items: dict[str, bytes], ttl: float | None = None) -> None:
        if not items:
            return
        if not ttl:
            await self._run("MSET", *[part for kv in items.items() for part in kv])
            return
        ms = max(1, int(ttl * 1000))
        await self._pipeline([("SET", key, value, "PX", ms) for key, value in items.items()], transaction=False)

    async def delete(self, key: str) -> None:
        await self._run("UNLINK", key)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        if not ttl:
            return int(await self._run("INCRBY", key, amount))
        value, _ = await self._pipeline(
            [("INCRBY", key, amount), ("PEXPIRE", key, max(1, int(ttl * 1000)), "NX")], transaction=True)
        return int(value)

    # -- guards and cache ---------------------------------------------------
    #
    # Each operation is a script call built by a ``_*_call`` method, so that the proxy's
    # composite operations (:meth:`admit`, :meth:`settle_and_put`) send several in one round trip.

    def _guard_call(self, req: GuardRequest) -> tuple[str, list[str], list[Any]]:
        budget = budget_micro(req.budget_usd)
        reserve = usd_to_micro_up(max(req.cost_usd, 0.0)) if budget else 0
        period = ""
        if budget:
            period = PERIOD_CODES.get(req.period, "")
            if not period:
                raise ValueError(f"unknown budget period {req.period!r}; expected hourly, daily or monthly")
        return (
            "guard",
            [bucket_key(req.caller), budget_prefix(req.caller, req.budget_scope)],
            [self._now_arg(), max(req.rpm, 0), max(req.tpm, 0), max(req.tokens, 0), budget, reserve,
             period, self._budget_slack_ms],
        )

    @staticmethod
    def _guard_result(req: GuardRequest, res: list[Any]) -> GuardResult:
        failed, wait, r, r_reset, t, t_reset, b_left, b_reset, period_id = res
        budgeted = req.budget_usd > 0
        return GuardResult(
            allowed=failed == 0,
            limit=LIMIT_NAMES[failed],
            retry_after=wait / 1000,
            requests_remaining=r if req.rpm > 0 else None,
            requests_reset=r_reset / 1000,
            tokens_remaining=max(0, t) if req.tpm > 0 else None,
            tokens_reset=t_reset / 1000,
            budget_remaining_usd=b_left / 1e6 if budgeted else None,
            budget_reset=b_reset / 1000,
            budget_key=f"{budget_prefix(req.caller, req.budget_scope)}:{period_id.decode()}" if budgeted else None,
            request=req,
        )

    def _settle_call(self, result: GuardResult, actual_tokens: int, actual_cost_usd: float):
        tokens, cost = settle_deltas(result, actual_tokens, actual_cost_usd)
        if not tokens and not cost:
            return None
        keys = [bucket_key(result.request.caller)]
        if cost and result.budget_key:  # a cost to settle: the guard reserved it under this key
            keys.append(result.budget_key)
        return "settle", keys, [self._now_arg(), result.request.tpm, tokens, cost]

    def _cache_get_call(self, caller: str, key: str):
        return "cache_get", [cache_key(caller, key), CACHE_INDEX_KEY], [self._now_arg()]

    def _cache_put_call(self, caller: str, key: str, value: bytes):
        return (
            "cache_put",
            [cache_key(caller, key), CACHE_INDEX_KEY],
            [self._now_arg(), value, max(1, int(self.cache_ttl * 1000)), self.cache_max_entries],
        )

    async def guard(self, req: GuardRequest) -> GuardResult:
        if not req.limited:
            return GuardResult.unguarded(req)
        return self._guard_result(req, await self._script(*self._guard_call(req)))

    async def settle(self, result: GuardResult, actual_tokens: int, actual_cost_usd: float) -> None:
        call = self._settle_call(result, actual_tokens, actual_cost_usd)
        if call is not None:
            await self._script(*call)

    async def cache_get(self, caller: str, key: str) -> bytes | None:
        return await self._script(*self._cache_get_call(caller, key))

    async def cache_put(self, caller: str, key: str, value: bytes) -> None:
        await self._script(*self._cache_put_call(caller, key, value))

    async def admit(self, cache: tuple[str, str] | None, req: GuardRequest | None) -> Admission:
        """Cache lookup and guards for one request: one script, one round trip."""
        guarded = req is not None and req.limited
        if cache and req is not None and guarded:
            _name, keys, args = self._guard_call(req)
            cached, verdict = await self._script("admit", [*keys, cache_key(*cache), CACHE_INDEX_KEY], args)
            return Admission(cached, self._guard_result(req, verdict))
        cached = await self.cache_get(*cache) if cache else None
        if req is None:
            return Admission(cached, None)
        return Admission(cached, await self.guard(req) if guarded else GuardResult.unguarded(req))

    async def settle_and_put(self, settles: list[Settlement], puts: list[CachePut]) -> None:
        """Reconcile guards and store answers, in one round trip."""
        calls = [c for c in (self._settle_call(*args) for args in settles) if c is not None]
        calls += [self._cache_put_call(*args) for args in puts]
        await self._scripts(calls)

    async def _scripts(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Script calls in one write. Those that found their script missing
        (``NOSCRIPT``) are loaded and sent again, and only those: the others have run, and a
        settlement must never be applied twice."""
        if not calls:
            return []
        commands = [("EVALSHA", SHAS[name], len(keys), *keys, *args) for name, keys, args in calls]

        async def run() -> list[Any]:
            client = self._client
            replies = await client.execute_many(commands, raise_replies=False)
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                self._health.script_reloads += 1
                await client.execute_many([("SCRIPT", "LOAD", SCRIPTS[name])
                                           for name in {calls[i][0] for i in missing}])
                again = await client.execute_many([commands[i] for i in missing], raise_replies=False)
                for i, reply in zip(missing, again):
                    replies[i] = reply
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return replies

        return await self._call(run)

    # -- statistics ---------------------------------------------------------

    async def stats_record(self, delta: StatsDelta) -> None:
        commands: list[tuple[Any, ...]] = []
        for name, amount in delta.counters.items():
            if float(amount).is_integer():
                commands.append(("HINCRBY", STATS_COUNTERS_KEY, name, int(amount)))
            else:
                commands.append(("HINCRBYFLOAT", STATS_COUNTERS_KEY, name, repr(float(amount))))
        commands.append(("EXPIRE", STATS_COUNTERS_KEY, STATS_TTL_SECONDS))
        for name, values in delta.samples.items():
            if values:
                key = STATS_SAMPLES_KEY.format(name=name)
                commands += [("LPUSH", key, *(repr(float(v)) for v in values)),
                             ("LTRIM", key, 0, STATS_SAMPLE_LIMIT - 1), ("EXPIRE", key, STATS_TTL_SECONDS)]
        if delta.recent:
            commands += [("LPUSH", STATS_RECENT_KEY, *delta.recent),
                         ("LTRIM", STATS_RECENT_KEY, 0, STATS_RECENT_LIMIT - 1),
                         ("EXPIRE", STATS_RECENT_KEY, STATS_TTL_SECONDS)]
        await self._pipeline(commands, transaction=False)

    async def stats_read(self, series: tuple[str, ...]) -> StatsSnapshot:
        commands: list[tuple[Any, ...]] = [("HGETALL", STATS_COUNTERS_KEY), ("LRANGE", STATS_RECENT_KEY, 0, -1)]
        commands += [("LRANGE", STATS_SAMPLES_KEY.format(name=name), 0, -1) for name in series]
        counters, recent, *samples = await self._pipeline(commands, transaction=False)
        return StatsSnapshot(
            counters={_text(k): float(v) for k, v in zip(counters[::2], counters[1::2])},
            samples={name: [float(v) for v in values] for name, values in zip(series, samples)},
            recent=list(recent),
        )

    # -- retrieval policy ---------------------------------------------------

    async def count_tool_use(self, caller: str, uses: dict[str, ToolUse], rule: BackoffRule) -> list[str]:
        if not uses:
            return []
        tools = list(uses)
        keys = [BACKOFF_INDEX_KEY]
        args: list[Any] = [self._now_arg(), repr(float(rule.threshold)), rule.min_compressions,
                           max(1, int(rule.period_s * 1000)), max(1, int(rule.counts_ttl_s * 1000)), rule.halve_at,
                           BACKOFF_INDEX_LIMIT]
        for tool in tools:
            keys += [tool_use_key(caller, tool), backoff_key(caller, tool)]
            args += [uses[tool].lossy, uses[tool].retrieved, index_member(caller, tool)]
        started = await self._script("tool_use", keys, args)
        return [tools[int(i) - 1] for i in started]

    async def tool_backoffs(self, limit: int = 100) -> list[Backoff]:
        reply = await self._script("tool_backoffs", [BACKOFF_INDEX_KEY], [self._now_arg(), max(0, limit)])
        return [backoff_of(_text(member), float(score)) for member, score in zip(reply[::2], reply[1::2])]

    async def shared_secret(self) -> bytes:
        """Created once with ``SET NX`` (the one entry without a TTL: a single, fixed key,
        since losing it would re-key every caller's state)."""
        mine = secrets.token_bytes(32)
        existing = await self._run("SET", SECRET_KEY, mine, "NX", "GET")
        return existing if existing is not None else mine

    async def close(self) -> None:
        await self._client.close()
