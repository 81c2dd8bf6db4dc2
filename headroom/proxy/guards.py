"""Rate limits and budgets, before a request is forwarded and after its answer.

:func:`guard_request` says what a request must pass; the store charges one request, its
estimated input tokens and its worst-case cost in one atomic call (together with the cache
lookup), so limits hold exactly across workers and instances. :func:`enforce` turns a "no"
into the answer. Refusals are native 429s: rate limits carry ``retry-after`` and the format's own remaining/reset
headers; an exhausted budget carries no ``retry-after`` (as providers do for spend limits)
and ``x-should-retry: false``, so SDKs do not hammer it. :func:`settlement` reconciles
the charge with the usage the upstream reported, once the answer is out.
"""

from __future__ import annotations

import math

from headroom.config import ProxyConfig
from headroom.formats import CHAT, Format
from headroom.formats.base import iso_after
from headroom.observability import metrics
from headroom.pricing import Pricing, Usage, worst_case_cost
from headroom.proxy.errors import ProxyError
from headroom.state.store import GuardRequest, GuardResult


class Refused(ProxyError):
    """A native 429 with the headers that explain it."""

    def __init__(self, limit: str, message: str, code: str, headers: dict[str, str]) -> None:
        super().__init__(429, message, code)
        self.limit = limit  # "rpm" | "tpm" | "budget"
        self.headers = headers


def estimate_input_tokens(body_bytes: int) -> int:
    """A cheap, deliberately generous estimate (≈4 bytes a token) reconciled after the answer."""
    return max(1, body_bytes // 4)


def guard_request(config: ProxyConfig, pricing: Pricing, caller: str, body: dict,
                  body_bytes: int, fmt: Format = CHAT, model: str | None = None) -> GuardRequest | None:
    """What this request must pass, or ``None`` when no limit is configured. ``model``: the
    request's model when the format does not keep it in the body (``fmt`` reads the output
    limit)."""
    rpm = config.rpm if config.rate_limit else 0
    tpm = config.tpm if config.rate_limit else 0
    budget = config.budget or 0.0
    if not (rpm or tpm or budget):
        return None
    tokens = estimate_input_tokens(body_bytes)
    if model is None:
        model = body["model"] if isinstance(body.get("model"), str) else ""
    cost = worst_case_cost(pricing, model, tokens, fmt.max_output_tokens(body)) if budget else 0.0
    return GuardRequest(caller=caller, rpm=rpm, tpm=tpm, tokens=tokens, budget_usd=budget, cost_usd=cost,
                        period=config.budget_period, budget_scope=config.budget_scope)


def store_down(config: ProxyConfig, guarded: bool) -> None:
    """The shared store is unreachable: go on unguarded (and uncached), or refuse a request
    that needed its guards under ``--fail-closed``."""
    metrics.store_unavailable()
    if guarded and config.fail_closed:
        raise ProxyError(503, "Headroom cannot reach its shared state and runs with --fail-closed")


def enforce(config: ProxyConfig, fmt: Format, result: GuardResult) -> None:
    """Raise the native refusal when a limit said no."""
    if result.budget_remaining_usd is not None:
        metrics.set_budget_remaining(result.budget_remaining_usd)
    if not result.allowed:
        raise refusal(fmt, config, result)


def refusal(fmt: Format, config: ProxyConfig, result: GuardResult) -> Refused:
    if result.limit == "budget":
        resets = iso_after(result.budget_reset)
        scope = "for this API key" if config.budget_scope == "key" else "for this deployment"
        message = (f"Headroom budget exhausted: ${config.budget:g} {config.budget_period} {scope}. "
                   f"It resets at {resets}.")
        headers = {"x-should-retry": "false", "x-headroom-budget-reset": resets}
        return Refused("budget", message, fmt.budget_code, headers)
    what = "requests" if result.limit == "rpm" else "input tokens"
    limit = config.rpm if result.limit == "rpm" else config.tpm
    message = (f"Headroom rate limit reached: {limit} {what} per minute per API key. "
               f"Retry after {math.ceil(result.retry_after)} s.")
    headers = {"retry-after": str(max(1, math.ceil(result.retry_after)))}
    headers.update(limit_headers(fmt, config, result))
    return Refused(result.limit or "rpm", message, "rate_limit_exceeded", headers)


def limit_headers(fmt: Format, config: ProxyConfig, result: GuardResult) -> dict[str, str]:
    """The format's own rate-limit headers, describing Headroom's buckets."""
    headers: dict[str, str] = {}
    for kind, limit, remaining, reset in (
        ("requests", config.rpm, result.requests_remaining, result.requests_reset),
        ("tokens", config.tpm, result.tokens_remaining, result.tokens_reset),
    ):
        if remaining is None:
            continue
        headers.update(fmt.rate_limit_headers(kind, limit, remaining, reset))
    return headers


def settlement(result: GuardResult | None, usage: Usage | None, cost: float, status: int,
               cache_hit: bool) -> tuple[GuardResult, int, float] | None:
    """How to reconcile an admitted request's charge, or ``None`` to let it stand.

    A cache hit spent nothing upstream: tokens and budget are given back (the request still
    counts against ``--rpm``). An upstream refusal spent nothing either. No usage and no
    error means the answer is unknown (a client that hung up, a broken stream): the
    reservation stands, so a budget can never be undercounted.
    """
    if result is None or not result.allowed:
        return None
    if cache_hit:
        return result, 0, 0.0
    if usage is not None:
        return result, usage.total_input_tokens, cost
    if status >= 400 and status != 499:
        return result, 0, 0.0
    return None
