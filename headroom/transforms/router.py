"""Send a block to the compressor for its kind (detection first, then one compressor).

A client's header around a command's output (:mod:`envelope`) is split off by detection; the
compressor sees only the output, and the header is put back in front of its result unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from headroom.transforms import (
    diff_compressor,
    json_compressor,
    log_compressor,
    search_compressor,
    table_compressor,
    text_compressor,
)
from headroom.transforms.base import Compressed, Context
from headroom.transforms.detect import Detection, Kind, detect


def _json(text: str, ctx: Context, found: Detection) -> Compressed | None:
    return json_compressor.compress(text, ctx, found.value, found.prefix, found.suffix)


def _search(text: str, ctx: Context, found: Detection) -> Compressed | None:
    return search_compressor.compress(text, ctx) or text_compressor.compress(text, ctx)


COMPRESSORS: dict[Kind, Callable[[str, Context, Detection], Compressed | None]] = {
    Kind.JSON: _json,
    Kind.SEARCH: _search,
    Kind.LOG: lambda text, ctx, found: log_compressor.compress(text, ctx),
    Kind.TABLE: lambda text, ctx, found: table_compressor.compress(text, ctx),
    Kind.TEXT: lambda text, ctx, found: text_compressor.compress(text, ctx),
    Kind.DIFF: lambda text, ctx, found: diff_compressor.compress(text, ctx),
}


def compress_block(text: str, tool_name: str | None, ctx: Context,
                   tool_input: dict | None = None) -> tuple[Kind, Compressed | None]:
    """(detected kind, result); a None result means "send the block unchanged"."""
    found = detect(text, tool_name, tool_input)
    compress = COMPRESSORS.get(found.kind)  # Kind.CODE has none: sent exactly
    if compress is None:
        return found.kind, None
    head = found.envelope
    result = compress(text[len(head):], ctx, found)
    if result is None or not head:
        return found.kind, result
    return found.kind, Compressed(head + result.text, result.transforms, result.omitted)
