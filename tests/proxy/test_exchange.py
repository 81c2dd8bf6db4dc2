"""An exchange's headers while in flight, and the outcome it becomes."""

from __future__ import annotations

from time import perf_counter

import pytest

from headroom.formats import ANTHROPIC
from headroom.formats import CHAT as OPENAI
from headroom.pricing import Usage, cost_usd, load_pricing
from headroom.proxy.exchange import Exchange, outcome_of, receipt_headers
from headroom.transforms import Receipt

PRICING = load_pricing()


def test_headers_say_what_ran():
    exchange = Exchange("hr_1", ANTHROPIC, "/v1/messages", 10)
    assert set(exchange.headroom_headers()) == {"x-headroom-request-id", "x-headroom-overhead-ms"}
    exchange.cache = "miss"
    exchange.compression_ran = True
    headers = exchange.headroom_headers()
    assert headers["x-headroom-cache"] == "miss" and headers["x-headroom-transforms"] == "none"
    assert headers["x-headroom-tokens-saved"] == "0"
    exchange.receipt = Receipt(tokens_before=900, tokens_after=300, transforms=["json:table"], estimated=True)
    headers = exchange.headroom_headers()
    assert (headers["x-headroom-tokens-saved"], headers["x-headroom-transforms"]) == ("600", "json:table")
    assert headers["x-headroom-tokens-estimated"] == "true"
    assert receipt_headers(None) == {"x-headroom-tokens-saved": "0", "x-headroom-transforms": "none"}


def test_overhead_leaves_out_the_time_spent_waiting_for_the_upstream():
    exchange = Exchange("hr_2", OPENAI, "/v1/chat/completions", 10)
    now = perf_counter()
    exchange.started = now - 1.0
    exchange.upstream_started = now - 0.99
    exchange.upstream_answered = now - 0.001
    assert 9.0 <= float(exchange.headroom_headers()["x-headroom-overhead-ms"]) < 30.0


def test_outcome_of_a_compressed_answered_request():
    exchange = Exchange("hr_3", ANTHROPIC, "/v1/messages", 10, model="claude-sonnet-4-5", caller="abc")
    exchange.status = 200
    exchange.receipt = Receipt(tokens_before=1000, tokens_after=400, transforms=["log:collapse"])
    exchange.usage = Usage(input_tokens=380, output_tokens=20, cache_read_tokens=10, cache_write_1h_tokens=5)
    outcome = outcome_of(exchange, PRICING)
    assert (outcome.tokens_before, outcome.tokens_after, outcome.tokens_saved) == (1000, 400, 600)
    assert outcome.cache_write_tokens == 5 and outcome.transforms == ("log:collapse",)
    assert outcome.cost_usd == pytest.approx(cost_usd(PRICING, "claude-sonnet-4-5", exchange.usage))
    assert outcome.error is None and outcome.caller == "abc" and outcome.latency_ms >= 0
    with pytest.raises(AttributeError):
        outcome.status = 500  # a finished record is read-only


def test_outcome_of_an_untouched_or_failed_request():
    untouched = Exchange("hr_4", OPENAI, "/v1/chat/completions", 10, model="gpt-4o")
    untouched.status = 200
    untouched.usage = Usage(input_tokens=70, cache_read_tokens=30, output_tokens=5)
    outcome = outcome_of(untouched, PRICING)
    assert (outcome.tokens_before, outcome.tokens_after) == (100, 100)  # what the upstream counted, nothing saved
    relayed = Exchange("hr_5", OPENAI, "/v1/chat/completions", 10)
    relayed.status = 529
    assert outcome_of(relayed, PRICING).error == "upstream_5xx" and outcome_of(relayed, PRICING).cost_usd == 0.0
    refused = Exchange("hr_6", OPENAI, "/v1/chat/completions", 10)
    refused.fail(429, "http_429")
    refused.fail(499, "client_disconnected")  # the first kind of failure is the one recorded
    assert (refused.status, outcome_of(refused, PRICING).error) == (499, "http_429")
