"""What one finished request amounts to: the record every consumer of figures reads.

The proxy builds one :class:`RequestOutcome` per request from its
:class:`~headroom.proxy.exchange.Exchange` (:func:`~headroom.proxy.exchange.outcome_of`) and
hands it, after the response has gone out, to the stats, the metrics and the request log. Nothing in it is secret: the
caller is a keyed hash, and message content is only attached when the operator asked.
"""

from __future__ import annotations

from typing import NamedTuple


class RequestOutcome(NamedTuple):
    """One finished request, immutable. A named tuple rather than a frozen dataclass: one is
    built for every request, and a frozen dataclass sets its 34 fields one by one through
    ``object.__setattr__`` (13 µs against 3 µs here)."""

    request_id: str
    timestamp: float  # UNIX seconds when the request arrived
    provider: str  # "anthropic" | "openai"
    path: str
    model: str | None = None
    stream: bool = False
    status: int = 0
    caller: str | None = None  # keyed hash of the API key, never the key
    # Token figures of the compression pipeline (what Headroom sent vs. what it received).
    tokens_before: int = 0
    tokens_after: int = 0
    transforms: tuple[str, ...] = ()
    # Usage as the upstream reported it.
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0  # what the upstream's usage costs ("usd_spent")
    usd_saved: float = 0.0  # what compression saved, priced cache-aware (headroom.savings); 0 without usage
    # Timings in milliseconds.
    latency_ms: float = 0.0
    overhead_ms: float = 0.0
    ttfb_ms: float | None = None
    # Guards and cache: None when the feature did not run for this request.
    cache: str | None = None  # "hit" | "miss" | "bypass"
    limited: str | None = None  # "rpm" | "tpm" | "budget" when rejected
    error: str | None = None  # kind of failure, e.g. "upstream_unreachable"
    model_fallback: str | None = None  # why LLMLingua did not compress this request's prose
    prefix_changes: int = 0  # blocks sent on an earlier turn that went out with other bytes (a bug)
    # The retrieval policy: retrievals answered in this request (by /v1/retrieve, or by the
    # retrieval tool loop), the tokens they gave back, and the tools whose new outputs this
    # request kept lossless because they are backed off.
    retrievals: int = 0
    retrieved_tokens: int = 0
    backed_off: tuple[str, ...] = ()
    bytes_in: int = 0
    bytes_out: int = 0
    upstream_calls: int = 0  # calls to the upstream (more than one when the proxy answered retrievals)
    messages: list | str | None = None  # only with --log-messages (a Responses ``input`` may be a string)

    @property
    def tokens_saved(self) -> int:
        return self.tokens_before - self.tokens_after
