"""Money and budget periods, as both stores count them.

Budgets are kept in integer micro-dollars so that concurrent reservations add up exactly
(in Lua as in Python); reservations round up and budgets round down, so rounding can only
ever make a budget stricter. Periods are UTC hours, days or months.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from headroom.state.store import GuardResult

PERIOD_CODES: dict[str, str] = {"hourly": "h", "daily": "d", "monthly": "m"}

#: Budget counters live this long past the end of their period, so that a request
#: reserved just before the rollover can still settle against its own period.
BUDGET_SLACK_SECONDS = 900.0


def usd_to_micro_up(usd: float) -> int:
    """USD → integer micro-dollars, rounded up (reservations)."""
    return math.ceil(round(usd * 1e6, 3))


def usd_to_micro_down(usd: float) -> int:
    """USD → integer micro-dollars, rounded down (budgets)."""
    return math.floor(round(usd * 1e6, 3))


def budget_micro(budget_usd: float) -> int:
    """The budget in micro-dollars; 0 for "no budget". A positive budget below one
    micro-dollar still means "a budget", never "no limit"."""
    return max(1, usd_to_micro_down(budget_usd)) if budget_usd > 0 else 0


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


def settle_deltas(result: GuardResult, actual_tokens: int, actual_cost_usd: float) -> tuple[int, int]:
    """What a settlement changes: (token delta, cost delta in micro-USD); (0, 0) when
    there is nothing to do (a refused request, or no limit that counts it)."""
    if not result.allowed:
        return 0, 0
    req = result.request
    tokens = actual_tokens - max(req.tokens, 0) if req.tpm > 0 else 0
    cost = 0
    if result.budget_key is not None:
        cost = round(max(actual_cost_usd, 0.0) * 1e6) - usd_to_micro_up(req.cost_usd)
    return tokens, cost


def ms_up(seconds: float) -> float:
    """Round a duration up to whole milliseconds, as the Redis scripts do."""
    return math.ceil(seconds * 1000 - 1e-6) / 1000 if seconds > 0 else 0.0
