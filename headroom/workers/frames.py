"""The model server's wire protocol: length-prefixed JSON frames over a stream socket.

A frame is a 4-byte big-endian length followed by that many bytes of one JSON object. JSON
keeps the protocol debuggable and language-neutral; the length prefix lets a reader take a
whole frame with two ``readexactly`` calls instead of scanning for delimiters. Frames are
capped (``MAX_FRAME``) so a corrupt or hostile peer cannot make the other side allocate
gigabytes from one length field.

Requests carry a client-chosen integer ``id``; replies echo it, so one connection carries
many requests at once and replies may come back in any order. Timeouts travel as relative
milliseconds (``timeout_ms``): the server turns them into its own monotonic deadline on
receipt, because the clocks of two hosts need not agree.

    {"id", "op": "compress", "texts": [str], "rate": float, "force_words": [str], "timeout_ms": int}
      -> {"id", "texts": [str], "tokens_before": int, "tokens_after": int}
      |  {"id", "error": str, "reason": "loading" | "overloaded" | "timeout" | "error"}
    {"id", "op": "status"}
      -> {"id", "state": "loading" | "ready" | "failed", "backend", "device", "model",
          "queue_windows", "error"?, ...counters}
    {"id", "op": "hello", "token": str}      first frame on TCP when the server has a token
      -> {"id", "ok": true}  |  {"id", "error": str, "reason": "unauthorized"} and the server closes
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import ujson

MAX_FRAME = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")

# Failure reasons carried by error replies.
LOADING = "loading"
OVERLOADED = "overloaded"
TIMEOUT = "timeout"
ERROR = "error"
UNAUTHORIZED = "unauthorized"


class FrameError(Exception):
    """The peer sent something that is not a valid frame; the connection cannot continue."""


def encode(message: dict[str, Any]) -> bytes:
    """One frame: header + JSON body. Raises FrameError if the body exceeds MAX_FRAME."""
    body = ujson.dumps(message, ensure_ascii=False).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict[str, Any]:
    """The JSON object in a frame body; anything but an object is a FrameError."""
    try:
        message = ujson.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError(f"frame is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise FrameError("frame is not a JSON object")
    return message


async def read_frame(reader: asyncio.StreamReader, max_frame: int = MAX_FRAME) -> dict[str, Any] | None:
    """The next frame, or None on a clean end of stream between frames.

    A stream that ends inside a frame raises ``asyncio.IncompleteReadError``; a length over
    ``max_frame`` raises FrameError before any of the body is read.
    """
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    (length,) = _HEADER.unpack(header)
    if length > max_frame:
        raise FrameError(f"frame of {length} bytes exceeds the {max_frame}-byte limit")
    return decode(await reader.readexactly(length))


def error_reply(request_id: Any, reason: str, error: str) -> dict[str, Any]:
    return {"id": request_id, "error": error, "reason": reason}
