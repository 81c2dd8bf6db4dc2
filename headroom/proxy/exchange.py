"""One proxied request in flight, and the record it becomes once its answer has gone out.

An :class:`Exchange` is made when a request arrives and carries everything the steps learn
about it. Each group of fields has one writer, named in its comment, so that a reader can
tell where any figure comes from. After the answer, :func:`outcome_of` turns it into the
frozen :class:`~headroom.outcome.RequestOutcome` that stats, metrics and the log read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from time import perf_counter, time

from headroom import savings
from headroom.formats import Format
from headroom.outcome import RequestOutcome
from headroom.pricing import Pricing, Usage, cost_usd
from headroom.proxy.response_cache import CachedAnswer
from headroom.state.store import GuardResult
from headroom.transforms import Receipt
from headroom.transforms.retrieval_policy import RetrievalNote

log = logging.getLogger("headroom.proxy")


def receipt_headers(receipt: Receipt | None) -> dict[str, str]:
    """The compression receipt as response headers; ``None``: the pipeline had nothing to do."""
    if receipt is None:
        return {"x-headroom-tokens-saved": "0", "x-headroom-transforms": "none"}
    headers = {
        "x-headroom-tokens-before": str(receipt.tokens_before),
        "x-headroom-tokens-after": str(receipt.tokens_after),
        "x-headroom-tokens-saved": str(receipt.tokens_saved),
        "x-headroom-transforms": ",".join(receipt.transforms) or "none",
    }
    if receipt.estimated:
        headers["x-headroom-tokens-estimated"] = "true"  # no BPE available: counts are estimates
    return headers


@dataclass(slots=True)
class Exchange:
    # -- on arrival (routes.proxy_request) --------------------------------------------------
    request_id: str
    format: Format  # the request's wire format, looked up once (headroom.formats.format_for_path)
    path: str
    bytes_in: int
    timestamp: float = field(default_factory=time)  # UNIX seconds
    started: float = field(default_factory=perf_counter)
    # -- the parsed request (routes.llm_request) -------------------------------------------
    model: str | None = None
    stream: bool = False
    caller: str | None = None  # keyed hash of the API key, never the key
    llm: bool = False  # an LLM call (parsed, compressed, metered), not a pass-through
    messages: list | str | None = None  # only with --log-messages (a Responses ``input`` may be a string)
    strip_usage_chunk: bool = False  # Headroom asked for OpenAI's usage chunk, the client did not
    # -- response cache and guards (routes.llm_request; ``limited`` by routes on a refusal) --
    cache: str | None = None  # "hit" | "miss" | "bypass"; None: the cache did not run
    cache_key: str | None = None  # store a successful answer under this key
    guard: GuardResult | None = None  # the reservation to reconcile
    limited: str | None = None  # "rpm" | "tpm" | "budget" when refused
    # -- compression (compression.compress_request) ----------------------------------------
    compression_ran: bool = False  # the step ran (receipt headers are sent, even for "nothing to do")
    receipt: Receipt | None = None  # what the pipeline did, when it had work
    # -- the answer (forward / replay; Headroom's own errors through fail()) -----------------
    status: int = 0
    error: str | None = None  # kind of failure, e.g. "upstream_unreachable"
    upstream_calls: int = 0  # every call upstream for this request (the retrieval loop adds its own)
    upstream_started: float = 0.0
    upstream_answered: float = 0.0  # the upstream's status line and headers arrived
    upstream_finished: float = 0.0
    first_byte_at: float = 0.0
    usage: Usage | None = None  # summed over every upstream call of the request
    answer: CachedAnswer | None = None  # the complete answer, when it is to be cached
    bytes_out: int = 0
    # -- retrievals the retrieval tool loop answered within this request (count_retrieval) ---
    retrievals: int = 0
    retrieved_tokens: int = 0  # tokens given back to the model by them (savings are net of them)

    def count_retrieval(self, note: RetrievalNote) -> None:
        """A retrieval answered within this request (the note
        :func:`~headroom.transforms.retrieval_policy.note_retrieval` returned), for its log line."""
        self.retrievals += 1
        self.retrieved_tokens += note.tokens

    def fail(self, status: int, error: str) -> None:
        """The request ends with an error Headroom produced or detected (first kind wins)."""
        self.status = status
        self.error = self.error or error

    @property
    def upstream_ms(self) -> float:
        if not self.upstream_started:
            return 0.0
        return ((self.upstream_finished or perf_counter()) - self.upstream_started) * 1000.0

    def usd_saved(self, pricing: Pricing) -> float | None:
        """Dollars compression saved (:mod:`headroom.savings`); None while the usage is unknown."""
        if self.usage is None:
            return None
        if self.receipt is None or not self.receipt.block_savings:
            return 0.0
        price = pricing.lookup(self.model or "").price
        return savings.usd_saved(self.receipt.block_savings, self.usage, price)

    def headroom_headers(self, pricing: Pricing | None = None) -> dict[str, str]:
        """Headroom's own response headers: request id, time added so far, cache, receipt
        (and, given the pricing once the usage is known, the dollars saved)."""
        now = perf_counter()
        waited = ((self.upstream_finished or self.upstream_answered or now) - self.upstream_started
                  if self.upstream_started else 0.0)
        headers = {
            "x-headroom-request-id": self.request_id,
            "x-headroom-overhead-ms": f"{max(0.0, now - self.started - waited) * 1000.0:.3f}",
        }
        if self.cache is not None:
            headers["x-headroom-cache"] = self.cache
        if self.compression_ran:
            headers.update(receipt_headers(self.receipt))
            saved = self.usd_saved(pricing) if pricing is not None else None
            if saved is not None:
                headers["x-headroom-usd-saved"] = f"{saved:.6f}"
        return headers


def outcome_of(exchange: Exchange, pricing: Pricing) -> RequestOutcome:
    """The finished request's record: timings, usage as reported, cost, and what it saved."""
    latency_ms = (perf_counter() - exchange.started) * 1000.0
    usage, receipt = exchange.usage, exchange.receipt
    tokens_before = tokens_after = 0
    if receipt is not None:
        tokens_before, tokens_after = receipt.tokens_before, receipt.tokens_after
    elif usage is not None:
        # Untouched by the pipeline: it sent what the upstream counted, and saved nothing.
        tokens_before = tokens_after = usage.total_input_tokens
    error = exchange.error
    if error is None and exchange.status >= 400:
        error = f"upstream_{exchange.status // 100}xx"  # relayed from the upstream as it was
    usd_saved = exchange.usd_saved(pricing) or 0.0
    changed = receipt.prefix_changes if receipt is not None else []
    if changed:
        log.warning("headroom prefix change: request %s re-sent %d earlier tool output(s) with different bytes "
                    "(provider %s, caller %s, originals %s); the provider's prompt cache breaks there",
                    exchange.request_id, len(changed), exchange.format.provider, exchange.caller, ",".join(changed))
    usage = usage or Usage()
    return RequestOutcome(
        request_id=exchange.request_id,
        timestamp=exchange.timestamp,
        provider=exchange.format.provider,
        path=exchange.path,
        model=exchange.model,
        stream=exchange.stream,
        status=exchange.status,
        caller=exchange.caller,
        tokens_before=tokens_before,
        tokens_after=tokens_after,
        transforms=tuple(receipt.transforms) if receipt is not None else (),
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens + usage.cache_write_1h_tokens,
        cost_usd=cost_usd(pricing, exchange.model or "", usage) if exchange.usage is not None else 0.0,
        usd_saved=usd_saved,
        latency_ms=latency_ms,
        overhead_ms=max(0.0, latency_ms - exchange.upstream_ms),
        ttfb_ms=(exchange.first_byte_at - exchange.started) * 1000.0 if exchange.first_byte_at else None,
        cache=exchange.cache,
        limited=exchange.limited,
        error=error,
        model_fallback=receipt.model_fallback if receipt is not None else None,
        prefix_changes=len(changed),
        bytes_in=exchange.bytes_in,
        bytes_out=exchange.bytes_out,
        upstream_calls=exchange.upstream_calls,
        messages=exchange.messages,
        retrievals=exchange.retrievals,
        retrieved_tokens=exchange.retrieved_tokens,
        backed_off=tuple(receipt.backed_off) if receipt is not None else (),
    )
