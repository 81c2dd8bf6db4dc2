"""The compression step of an LLM request: run the pipeline, turn its receipt into figures.

Cheap when there is nothing to do (``needs_work`` looks only at lengths). When the pipeline
changes the body, the caller forwards the new body; otherwise the client's own bytes go
upstream untouched. Receipts travel back as ``x-headroom-*`` response headers.
"""

from __future__ import annotations

from sanic import Sanic

from headroom.observability import metrics
from headroom.proxy.forward import Exchange
from headroom.proxy.providers import Provider
from headroom.transforms import PipelineOptions, Receipt, needs_work, run_pipeline


def pipeline_options(config) -> PipelineOptions:
    return PipelineOptions(ccr_ttl=config.ccr_ttl)


def receipt_headers(receipt: Receipt | None) -> dict[str, str]:
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


async def optimize(app: Sanic, provider: Provider, body: dict, exchange: Exchange) -> dict | None:
    """The compressed body, or ``None`` to forward the client's original bytes."""
    outcome = exchange.outcome
    options = app.ctx.pipeline_options
    if not app.ctx.config.optimize or not needs_work(body, provider.name, options):
        exchange.extra_headers.update(receipt_headers(None))
        return None
    new_body, receipt = await run_pipeline(body, provider.name, app.ctx.store, outcome.caller, options)
    exchange.receipt = receipt
    outcome.tokens_before, outcome.tokens_after = receipt.tokens_before, receipt.tokens_after
    outcome.transforms = list(receipt.transforms)
    if receipt.errors:
        metrics.compression_failed()
    exchange.extra_headers.update(receipt_headers(receipt))
    return new_body
