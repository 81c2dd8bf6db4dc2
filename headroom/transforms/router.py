"""Send a block to the compressor for its kind (detection first, then one compressor)."""

from __future__ import annotations

from headroom.transforms import (
    json_compressor,
    log_compressor,
    search_compressor,
    table_compressor,
    text_compressor,
)
from headroom.transforms.base import Compressed, Context
from headroom.transforms.detect import Kind, detect


def compress_block(text: str, tool_name: str | None, ctx: Context,
                   tool_input: dict | None = None) -> tuple[Kind, Compressed | None]:
    """(detected kind, result); a None result means "send the block unchanged"."""
    found = detect(text, tool_name, tool_input)
    kind = found.kind
    if kind is Kind.CODE:
        return kind, None
    if kind is Kind.JSON:
        return kind, json_compressor.compress(text, ctx, found.value, found.prefix, found.suffix)
    if kind is Kind.SEARCH:
        result = search_compressor.compress(text, ctx)
        if result is None:
            result = text_compressor.compress(text, ctx)
        return kind, result
    if kind is Kind.LOG:
        return kind, log_compressor.compress(text, ctx)
    if kind is Kind.TABLE:
        return kind, table_compressor.compress(text, ctx)
    return kind, text_compressor.compress(text, ctx)
