"""The guards' pure functions: what a request must pass, how a refusal reads, how a charge settles."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from headroom.config import ProxyConfig
from headroom.formats import ANTHROPIC
from headroom.formats import CHAT as OPENAI
from headroom.pricing import Usage, load_pricing
from headroom.proxy.guards import Refused, guard_request, limit_headers, refusal, settlement
from headroom.state.store import GuardRequest, GuardResult

PRICING = load_pricing()
BODY = {"model": "claude-sonnet-4-5", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]}


def verdict(limit: str | None, **fields) -> GuardResult:
    values = dict(allowed=limit is None, limit=limit, retry_after=2.5, requests_remaining=0, requests_reset=6.0,
                  tokens_remaining=120, tokens_reset=3.0, budget_remaining_usd=None, budget_reset=7200.0,
                  budget_key=None, request=GuardRequest("c", rpm=10, tpm=1000))
    values.update(fields)
    return GuardResult(**values)


def test_no_limit_configured_asks_nothing_of_the_store():
    config = ProxyConfig(rate_limit=False)
    assert guard_request(config, PRICING, "c", BODY, 4000) is None
    assert guard_request(ProxyConfig(rpm=0, tpm=0), PRICING, "c", BODY, 4000) is None


def test_guard_request_estimates_tokens_and_reserves_the_worst_case():
    config = ProxyConfig(rpm=5, tpm=100, budget=2.0, budget_period="hourly", budget_scope="key")
    req = guard_request(config, PRICING, "c", BODY, 4000)
    assert (req.rpm, req.tpm, req.tokens, req.period, req.budget_scope) == (5, 100, 1000, "hourly", "key")
    price = PRICING.lookup("claude-sonnet-4-5").price
    # every input token at the dearest input-side rate, plus the full max_tokens of output
    assert req.cost_usd == pytest.approx((1000 * price.max_input_rate + 1000 * price.output) / 1e6)
    no_budget = guard_request(ProxyConfig(rpm=5), PRICING, "c", BODY, 4000)
    assert no_budget.cost_usd == 0.0 and no_budget.budget_usd == 0.0


def test_rate_limit_refusal_is_a_native_429_with_retry_after():
    config = ProxyConfig(rpm=10, tpm=1000)
    refused = refusal(ANTHROPIC, config, verdict("rpm"))
    assert isinstance(refused, Refused) and refused.status == 429 and refused.limit == "rpm"
    assert refused.headers["retry-after"] == "3"  # 2.5 s rounded up
    assert "10 requests per minute" in refused.message
    assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert refused.code == "rate_limit_exceeded"


def test_budget_refusal_says_when_it_resets_and_not_to_retry():
    config = ProxyConfig(budget=5.0, budget_period="daily", budget_scope="global")
    refused = refusal(OPENAI, config, verdict("budget", budget_remaining_usd=0.0))
    assert refused.code == "insufficient_quota" and "retry-after" not in refused.headers
    assert refused.headers["x-should-retry"] == "false"
    reset = datetime.fromisoformat(refused.headers["x-headroom-budget-reset"].replace("Z", "+00:00"))
    assert 7100 < (reset - datetime.now(timezone.utc)).total_seconds() <= 7200
    assert "$5 daily for this deployment" in refused.message
    assert refusal(ANTHROPIC, config, verdict("budget")).code == "budget_exceeded"


def test_limit_headers_use_each_providers_own_names():
    config = ProxyConfig(rpm=10, tpm=1000)
    openai = limit_headers(OPENAI, config, verdict(None))
    assert openai == {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "0",
                      "x-ratelimit-reset-requests": "6.000s", "x-ratelimit-limit-tokens": "1000",
                      "x-ratelimit-remaining-tokens": "120", "x-ratelimit-reset-tokens": "3.000s"}
    anthropic = limit_headers(ANTHROPIC, config, verdict(None, tokens_remaining=None))
    assert set(anthropic) == {"anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining",
                              "anthropic-ratelimit-requests-reset"}  # no token limit: no token headers


def test_settlement_reconciles_with_what_really_happened():
    admitted = verdict(None)
    usage = Usage(input_tokens=300, cache_read_tokens=100, output_tokens=50)
    assert settlement(admitted, usage, 0.01, 200, cache_hit=False) == (admitted, 400, 0.01)
    assert settlement(admitted, None, 0.0, 200, cache_hit=True) == (admitted, 0, 0.0)  # the cache paid
    assert settlement(admitted, None, 0.0, 529, cache_hit=False) == (admitted, 0, 0.0)  # refused upstream
    assert settlement(admitted, None, 0.0, 499, cache_hit=False) is None  # unknown: the reservation stands
    assert settlement(admitted, None, 0.0, 200, cache_hit=False) is None  # a broken stream: stands too
    assert settlement(verdict("rpm"), usage, 0.01, 200, cache_hit=False) is None  # nothing was charged
    assert settlement(None, usage, 0.01, 200, cache_hit=False) is None
