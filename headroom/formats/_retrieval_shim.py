"""TEMPORARY: the retrieval tool's definition, until branch i21core moves TOOL_NAME,
TOOL_DESCRIPTION and INPUT_SCHEMA where formats may import them (formats import no
``headroom.transforms`` module). A copy of :mod:`headroom.transforms.retrieval`'s constants;
a unit test checks it still equals them. Delete on merging i21core."""

from __future__ import annotations

from typing import Any

TOOL_NAME = "headroom_retrieve"

TOOL_DESCRIPTION = (
    "Get back content that Headroom left out of a tool result to save context. A note such as "
    "[headroom: 370 of 400 lines omitted; retrieve with key 3f9c0a1b2c3d4e5f] marks where; call this with that key. "
    "Prefer the smallest answer that will do: `query` returns only the lines containing every word of it "
    "(case-insensitive), numbered, with 2 lines of context; `lines` returns a line or range of the original "
    "(\"120\" or \"120-245\"), numbered; with neither, the whole original comes back."
)

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "key": {
            "type": "string",
            "description": "The key named in the [headroom: … retrieve with key K] note (16 hex digits).",
        },
        "lines": {
            "type": "string",
            "description": 'Optional: a line number ("120") or an inclusive range ("120-245") of the original, '
                           "numbered from 1.",
        },
        "query": {
            "type": "string",
            "description": "Optional: text to look for. Lines holding every word of it (case-insensitive) come "
                           "back with their line numbers and 2 lines of context. With `lines`, only that range "
                           "is searched.",
        },
    },
    "required": ["key"],
    "additionalProperties": False,
}
