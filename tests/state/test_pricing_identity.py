"""Pricing table, cost arithmetic and caller identity."""

from __future__ import annotations

import json

import pytest

from headroom.pricing import Usage, cost_usd, load_pricing, worst_case_cost
from headroom.state.identity import caller_hash, new_secret, secret_from_text


@pytest.fixture(scope="module")
def pricing():
    return load_pricing()


@pytest.mark.parametrize(
    "model, entry",
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-opus-4-5-20251101", "claude-opus-4-5"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("gpt-4.1", "gpt-4.1"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("gpt-5", "gpt-5"),
        ("openai/gpt-5-nano", "gpt-5-nano"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("o4-mini", "o4-mini"),
        ("O1", "o1"),
    ],
)
def test_longest_prefix_at_a_name_boundary(pricing, model, entry):
    match = pricing.lookup(model)
    assert match.entry == entry and not match.fallback


def test_unknown_model_is_priced_safely_and_flagged(pricing):
    match = pricing.lookup("mystery-model-9000")
    assert match.fallback and match.entry == "_fallback"
    assert pricing.lookup("gpt-4omni").fallback  # "gpt-4o" must end at a boundary
    current = ("claude-opus-4-5", "claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5", "gpt-4.1",
               "gpt-4o", "o1", "o3", "o4-mini")  # the "-pro" tiers are listed, hence never a fallback
    for rate in ("input", "output", "cache_read", "cache_write", "cache_write_1h"):
        assert getattr(match.price, rate) >= max(getattr(pricing.models[m], rate) for m in current)


def test_cost_math(pricing):
    usage = Usage(input_tokens=1000, output_tokens=500, cache_read_tokens=10_000, cache_write_tokens=2000,
                  cache_write_1h_tokens=1000)
    # sonnet 4.5: 3 in, 15 out, 0.30 read, 3.75 write, 6 write-1h per MTok
    expected = (1000 * 3 + 500 * 15 + 10_000 * 0.3 + 2000 * 3.75 + 1000 * 6) / 1e6
    assert cost_usd(pricing, "claude-sonnet-4-5-20250929", usage) == pytest.approx(expected)
    assert cost_usd(pricing, "gpt-4o-mini", Usage(1_000_000, 1_000_000, 1_000_000)) == pytest.approx(
        0.15 + 0.6 + 0.075)
    assert cost_usd(pricing, "claude-haiku-4-5", Usage()) == 0.0


def test_long_context_rates(pricing):
    short = cost_usd(pricing, "claude-sonnet-4-5", Usage(input_tokens=200_000, output_tokens=1000))
    long = cost_usd(pricing, "claude-sonnet-4-5", Usage(input_tokens=200_001, output_tokens=1000))
    assert short == pytest.approx((200_000 * 3 + 1000 * 15) / 1e6)
    assert long == pytest.approx((200_001 * 6 + 1000 * 22.5) / 1e6)


def test_worst_case_cost(pricing):
    # every input token at the dearest input-side rate (1-hour cache write: $10 for opus 4.5)
    assert worst_case_cost(pricing, "claude-opus-4-5", 10_000, 1000) == pytest.approx((10_000 * 10 + 1000 * 25) / 1e6)
    assert worst_case_cost(pricing, "gpt-4.1", 1000, None) == pytest.approx((1000 * 2 + 32768 * 8) / 1e6)
    usage = Usage(input_tokens=400, cache_read_tokens=300, cache_write_1h_tokens=300, output_tokens=1000)
    for model in ("claude-sonnet-4-5", "claude-opus-4-1", "gpt-5", "o3", "mystery"):
        assert worst_case_cost(pricing, model, usage.total_input_tokens, 1000) >= cost_usd(pricing, model, usage)
    assert worst_case_cost(pricing, "mystery", 1000, 1000) == pytest.approx((1000 * 30 + 1000 * 75) / 1e6)


def test_usage_from_provider_payloads():
    anthropic = Usage.from_anthropic({
        "input_tokens": 12, "output_tokens": 34, "cache_read_input_tokens": 500,
        "cache_creation_input_tokens": 300,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100},
    })
    assert anthropic == Usage(12, 34, 500, 200, 100) and anthropic.total_tokens == 846
    chat = Usage.from_openai({"prompt_tokens": 1000, "completion_tokens": 20,
                              "prompt_tokens_details": {"cached_tokens": 768}})
    assert chat == Usage(input_tokens=232, output_tokens=20, cache_read_tokens=768)
    responses = Usage.from_openai({"input_tokens": 50, "output_tokens": 5,
                                   "input_tokens_details": {"cached_tokens": 0}})
    assert responses == Usage(50, 5)
    assert Usage.from_openai(None) == Usage() == Usage.from_anthropic({})


def test_pricing_file_merges_or_replaces(tmp_path):
    override = tmp_path / "prices.json"
    override.write_text(json.dumps({"models": {"my-model": {"input": 1, "output": 2},
                                               "gpt-4o": {"input": 9, "output": 9}}}))
    merged = load_pricing(override)
    assert merged.lookup("my-model-v2").entry == "my-model"
    assert merged.lookup("my-model").price.cache_read == 1.0  # defaults to the input rate
    assert merged.lookup("gpt-4o").price.input == 9.0
    assert merged.lookup("claude-sonnet-4-5").price.input == 3.0  # bundled models kept
    override.write_text(json.dumps({"_replace": True, "my-model": {"input": 1, "output": 2},
                                    "_fallback": {"input": 50, "output": 100}}))
    replaced = load_pricing(override)
    assert replaced.lookup("claude-sonnet-4-5").fallback and replaced.fallback.input == 50
    assert list(replaced.models) == ["my-model"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"models": {"m": {"input": 1}}}', "needs 'output'"),
    ('{"models": {"m": {"input": -1, "output": 1}}}', "non-negative"),
])
def test_bad_pricing_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_pricing(path)


def test_bundled_table_is_complete(pricing):
    assert "_source" not in pricing.models and pricing.source
    for family in ("claude-opus-4-5", "claude-opus-4-1", "claude-sonnet-4-5", "claude-sonnet-4", "claude-haiku-4-5",
                   "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5", "gpt-5-mini",
                   "gpt-5-nano", "o1", "o3", "o3-mini", "o4-mini"):
        price = pricing.models[family]
        assert price.input > 0 and price.output > 0 and price.cache_read <= price.input <= price.cache_write


def test_caller_hash():
    secret = new_secret()
    key = "sk-ant-api03-very-secret"
    digest = caller_hash(secret, key)
    assert digest == caller_hash(secret, key) and len(digest) == 32 and int(digest, 16) >= 0
    assert key not in digest and "secret" not in digest
    assert caller_hash(new_secret(), key) != digest
    assert caller_hash(secret, key + "x") != digest
    with pytest.raises(ValueError):
        caller_hash(b"", key)
    assert secret_from_text("00" * 32) == bytes(32)
    assert secret_from_text("correct horse") == b"correct horse"


@pytest.mark.parametrize("secret_bytes", [1, 13, 32, 64, 65, 200])  # shorter, as long as and longer than a block
def test_caller_hash_is_hmac_sha256_whatever_the_secrets_length(secret_bytes):
    """The keyed states are built once per secret and copied (identity._keyed_sha256): the
    hash stays HMAC-SHA256, so callers keep their identity (and their stored state) across
    versions and between workers."""
    import hashlib
    import hmac
    import os

    secret = os.urandom(secret_bytes)
    for credential in (b"", b"sk-ant-api03-very-secret", os.urandom(300)):
        expected = hmac.new(secret, credential, hashlib.sha256).hexdigest()[:32]
        assert caller_hash(secret, credential) == expected
        assert caller_hash(secret, credential) == expected  # the keyed states are copied, never used up
