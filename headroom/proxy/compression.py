"""The compression step of an LLM request: run the pipeline, keep its receipt.

Cheap when there is nothing to do (``needs_work`` looks only at lengths). When the pipeline
changes the body, the caller forwards the new body; otherwise the client's own bytes go
upstream untouched. Receipts travel back as ``x-headroom-*`` response headers
(:meth:`~headroom.proxy.exchange.Exchange.headroom_headers`).

Words: *compression* is what Headroom does to a request; :mod:`headroom.transforms` holds
the compressors; the *pipeline* (:func:`~headroom.transforms.run_pipeline`) runs them.
"""

from __future__ import annotations

from headroom.observability import metrics
from headroom.proxy.exchange import Exchange
from headroom.proxy.resources import WorkerResources
from headroom.transforms import needs_work, run_pipeline


async def compress_request(resources: WorkerResources, body: dict, exchange: Exchange) -> dict | None:
    """The compressed body, or ``None`` to forward the client's original bytes."""
    exchange.compression_ran = True
    options = resources.pipeline_options
    if not resources.config.optimize or not needs_work(body, exchange.format, options):
        return None
    fmt = exchange.format
    assert exchange.caller is not None  # identified before anything is compressed (routes)
    new_body, receipt = await run_pipeline(body, fmt, resources.store, exchange.caller, options, resources.model)
    exchange.receipt = receipt
    if receipt.errors:
        metrics.compression_failed()
    if receipt.model_compressed:
        metrics.model_compressed(receipt.model_compressed)
    if receipt.model_fallback:
        metrics.model_fallback(receipt.model_fallback)
    return new_body
