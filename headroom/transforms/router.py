"""Send a block to the compressor for its kind (detection first, then one compressor).

A client's header around a command's output (:mod:`envelope`) is split off by detection; the
compressor sees only the output, and the header is put back in front of its result unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from headroom.transforms import (
    diff_compressor,
    json_compressor,
    json_value,
    log_compressor,
    search_compressor,
    table_compressor,
    text_compressor,
)
from headroom.transforms.base import Brief, Compressed
from headroom.transforms.detect import Detection, Kind, detect


def _json(text: str, brief: Brief, found: Detection) -> Compressed | None:
    return json_compressor.compress(text, brief, found.value, found.prefix, found.suffix)


def _search(text: str, brief: Brief, found: Detection) -> Compressed | None:
    return search_compressor.compress(text, brief) or text_compressor.compress(text, brief)


COMPRESSORS: dict[Kind, Callable[[str, Brief, Detection], Compressed | None]] = {
    Kind.JSON: _json,
    Kind.SEARCH: _search,
    Kind.LOG: lambda text, brief, found: log_compressor.compress(text, brief),
    Kind.TABLE: lambda text, brief, found: table_compressor.compress(text, brief),
    Kind.TEXT: lambda text, brief, found: text_compressor.compress(text, brief),
    Kind.DIFF: lambda text, brief, found: diff_compressor.compress(text, brief),
}


def compress_block(text: str, tool_name: str | None, brief: Brief,
                   tool_input: dict | None = None, structured: bool = False) -> tuple[Kind, Compressed | None]:
    """(detected kind, result); a None result means "send the block unchanged".

    ``structured``: the text is the JSON of an object or array that the format puts back as a
    value, so only JSON of the same shape may replace it (:mod:`json_value`); no detection."""
    if structured:
        return Kind.JSON, json_value.compress(text, brief)
    found = detect(text, tool_name, tool_input)
    compress = COMPRESSORS.get(found.kind)  # Kind.CODE has none: sent exactly
    if compress is None:
        return found.kind, None
    head = found.envelope
    if head:
        brief = replace(brief, line_offset=brief.line_offset + head.count("\n"))
    result = compress(text[len(head):], brief, found)
    if result is None or not head:
        return found.kind, result
    return found.kind, Compressed(head + result.text, result.transforms, result.omitted)
