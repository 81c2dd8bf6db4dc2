"""Token-cutting transforms: a pure, memoised, cache-safe pipeline over request bodies.

Entry points for the proxy: :func:`needs_work` (cheap gate), :func:`run_pipeline`,
:class:`PipelineOptions`, :class:`Receipt`, and :func:`retrieve` for CCR originals.
"""

from headroom.transforms.ccr import retrieve
from headroom.transforms.pipeline import (
    PipelineOptions,
    Receipt,
    needs_work,
    run_pipeline,
)

__all__ = ["PipelineOptions", "Receipt", "needs_work", "retrieve", "run_pipeline"]
