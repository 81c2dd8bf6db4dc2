"""Model prices and cost arithmetic.

The table is a data file (``headroom/data/pricing.json``; ``--pricing-file`` merges a file
of the same shape over it). Prices are USD per million tokens for uncached input, output,
cache reads and cache writes (Anthropic's 1-hour cache writes and long-context rates where
they differ). A model name resolves to the entry with the longest matching prefix that ends
at a name boundary (:mod:`headroom.model_names`, the rule every per-model table uses).

Unknown models get the table's ``_fallback`` rates — the dearest mainstream ones — so that
budgets err on the safe side; :meth:`Pricing.lookup` flags them (``PriceMatch.fallback``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from headroom import model_names

_LOOKUP_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. ``long_context`` (when set) replaces every rate once a
    request's input exceeds ``long_context_threshold`` tokens. ``max_output`` is the
    model's largest output, for worst-case costs of requests without ``max_tokens``."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    cache_write_1h: float
    max_output: int | None = None
    long_context_threshold: int | None = None
    long_context: Price | None = None

    def for_input(self, input_tokens: int) -> Price:
        """The rates that apply to a request with this many input tokens in all."""
        if self.long_context is not None and self.long_context_threshold is not None \
                and input_tokens > self.long_context_threshold:
            return self.long_context
        return self

    @property
    def max_input_rate(self) -> float:
        return max(self.input, self.cache_read, self.cache_write, self.cache_write_1h)


@dataclass(frozen=True, slots=True)
class PriceMatch:
    """A lookup's answer: the price, the table entry it came from (``"_fallback"`` for an
    unknown model) and whether it is the fallback."""

    price: Price
    entry: str
    fallback: bool


class Usage(NamedTuple):
    """Tokens as the upstream reports them, normalised (an immutable named tuple: made for
    every answer, cheaper to build than a frozen dataclass).

    ``input_tokens`` is UNCACHED input only (Anthropic's ``input_tokens``; for OpenAI,
    ``prompt_tokens - cached_tokens``); ``cache_write_tokens`` are 5-minute (or OpenAI)
    cache writes and ``cache_write_1h_tokens`` Anthropic's 1-hour ones.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens + self.cache_write_1h_tokens

    @property
    def total_tokens(self) -> int:
        return self.total_input_tokens + self.output_tokens

    @classmethod
    def from_anthropic(cls, usage: Mapping[str, Any] | None) -> Usage:
        """From an Anthropic ``usage`` object (message or ``message_delta``)."""
        if not usage:
            return cls()
        write = int(usage.get("cache_creation_input_tokens") or 0)
        split = usage.get("cache_creation") or {}
        write_1h = int(split.get("ephemeral_1h_input_tokens") or 0) if isinstance(split, Mapping) else 0
        return cls(
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            cache_read_tokens=int(usage.get("cache_read_input_tokens") or 0),
            cache_write_tokens=max(0, write - write_1h),
            cache_write_1h_tokens=write_1h,
        )

    @classmethod
    def from_openai(cls, usage: Mapping[str, Any] | None) -> Usage:
        """From an OpenAI ``usage`` object: Chat Completions (``prompt_tokens``…) or
        Responses (``input_tokens``…). Cached tokens are split out of the input."""
        if not usage:
            return cls()
        if "prompt_tokens" in usage:
            total_in = int(usage.get("prompt_tokens") or 0)
            out = int(usage.get("completion_tokens") or 0)
            details = usage.get("prompt_tokens_details") or {}
        else:
            total_in = int(usage.get("input_tokens") or 0)
            out = int(usage.get("output_tokens") or 0)
            details = usage.get("input_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, Mapping) else 0
        return cls(input_tokens=max(0, total_in - cached), output_tokens=out, cache_read_tokens=cached)


class Pricing:
    """A loaded price table. Use :meth:`lookup`, or :func:`cost_usd` / :func:`worst_case_cost`."""

    def __init__(self, models: dict[str, Price], fallback: Price, source: str = "") -> None:
        self.models = models
        self.fallback = fallback
        self.source = source
        self._cache: dict[str, PriceMatch] = {}

    def lookup(self, model: str) -> PriceMatch:
        """Longest table prefix of ``model`` ending at a name boundary, else the fallback."""
        hit = self._cache.get(model)
        if hit is not None:
            return hit
        found = model_names.resolve(model, self.models)
        match = PriceMatch(found[1], found[0], False) if found else PriceMatch(self.fallback, "_fallback", True)
        if len(self._cache) < _LOOKUP_CACHE_MAX:
            self._cache[model] = match
        return match


def cost_usd(pricing: Pricing, model: str, usage: Usage) -> float:
    """What a request with this usage costs, in USD."""
    rates = pricing.lookup(model).price.for_input(usage.total_input_tokens)
    return (
        usage.input_tokens * rates.input
        + usage.output_tokens * rates.output
        + usage.cache_read_tokens * rates.cache_read
        + usage.cache_write_tokens * rates.cache_write
        + usage.cache_write_1h_tokens * rates.cache_write_1h
    ) / 1e6


def worst_case_cost(pricing: Pricing, model: str, input_tokens: int, max_output_tokens: int | None) -> float:
    """The most a request can cost: every input token at the dearest input-side rate
    (a cache write) and the full ``max_output_tokens`` (the model's ``max_output`` — or the
    fallback's — when the request sets none). Reserve this against the budget."""
    match = pricing.lookup(model)
    rates = match.price.for_input(input_tokens)
    if max_output_tokens is None:
        max_output_tokens = match.price.max_output or pricing.fallback.max_output or 0
    return (input_tokens * rates.max_input_rate + max_output_tokens * rates.output) / 1e6


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _price(name: str, raw: Any, origin: str, nested: bool = False) -> Price:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{origin}: price of {name!r} must be an object")

    def rate(key: str, default: float | None = None) -> float:
        value = raw.get(key, default)
        if value is None:
            raise ValueError(f"{origin}: {name!r} needs {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{origin}: {name!r}.{key} must be a non-negative number")
        return float(value)

    input_rate = rate("input")
    cache_write = rate("cache_write", input_rate)
    long_raw = raw.get("long_context")
    long_context = threshold = None
    if long_raw is not None and not nested:
        threshold = int(long_raw.get("threshold", 0)) if isinstance(long_raw, Mapping) else 0
        if threshold <= 0:
            raise ValueError(f"{origin}: {name!r}.long_context needs a positive 'threshold'")
        long_context = _price(f"{name}.long_context", long_raw, origin, nested=True)
    max_output = raw.get("max_output")
    return Price(
        input=input_rate,
        output=rate("output"),
        cache_read=rate("cache_read", input_rate),
        cache_write=cache_write,
        cache_write_1h=rate("cache_write_1h", cache_write),
        max_output=int(max_output) if max_output is not None else None,
        long_context_threshold=threshold,
        long_context=long_context,
    )


def _parse(data: Any, origin: str) -> tuple[dict[str, Price], Price | None, str, bool]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{origin}: expected a JSON object")
    models_raw = data.get("models")
    if models_raw is None:  # a flat {model: price} file
        models_raw = {k: v for k, v in data.items() if not k.startswith("_")}
    if not isinstance(models_raw, Mapping):
        raise ValueError(f"{origin}: 'models' must be an object")
    models = {model_names.normalise(k): _price(k, v, origin) for k, v in models_raw.items() if not k.startswith("_")}
    fallback = _price("_fallback", data["_fallback"], origin) if "_fallback" in data else None
    return models, fallback, str(data.get("_source", "")), bool(data.get("_replace", False))


def load_pricing(path: str | Path | None = None) -> Pricing:
    """The bundled table, with the file at ``path`` (if any) merged over it: its models
    replace or extend the bundled ones, its ``_fallback`` replaces the bundled one, and
    ``"_replace": true`` drops the bundled models altogether. Raises ValueError/OSError."""
    bundled = resources.files("headroom").joinpath("data/pricing.json").read_text(encoding="utf-8")
    models, fallback, source, _ = _parse(json.loads(bundled), "bundled pricing.json")
    assert fallback is not None
    if path is not None:
        origin = str(path)
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{origin}: not valid JSON: {exc}") from exc
        extra, extra_fallback, extra_source, replace = _parse(data, origin)
        models = extra if replace else {**models, **extra}
        fallback = extra_fallback or fallback
        source = extra_source or f"{source} + {origin}"
    return Pricing(models, fallback, source)
