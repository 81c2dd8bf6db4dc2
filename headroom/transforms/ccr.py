"""CCR: compress, cache, retrieve.

Whenever a compressor drops content, the original block is stored under a key derived from
its content, and the compressed text carries a visible marker naming that key, so the model
(through the ``headroom_retrieve`` tool) or the user (``GET /v1/retrieve/{key}``) can fetch
what was left out. Originals are partitioned by the caller hash: another API key cannot
read them. Beside each original a small record names the tool whose output it was
(:func:`tool_key`), so that a retrieval can be counted against that tool
(:mod:`headroom.transforms.retrieval_policy`).

The marker (:func:`marker`) is paid for in tokens on every later turn, so it is short, and
it is deterministic (the same omission gives the same bytes: the prompt cache's prefix stays
put). It says what was left out, the key, and how to call the tool::

    [headroom: 373 of 400 lines omitted (13-199, 216-389); headroom_retrieve key=3f9c… lines="13-199" or query="…"]
    [headroom: 135 of 150 rows omitted (lines 7-141); headroom_retrieve key=3f9c… lines="7-141" or query="…"]
    [headroom: 94 of 100 items omitted; headroom_retrieve key=3f9c… query="…"]

(``3f9c…``: the 16 hex digits of the key.)

Line numbers are the original's as :func:`headroom.transforms.retrieval.split_lines` numbers
them (the whole block, a client's envelope header included), so ``lines`` asks for exactly
the lines named; where a compressor cannot name lines (JSON items, grouped search matches,
words) the marker suggests a ``query``. The key is the marker's only run of 16 hex digits:
:data:`MARKER_KEY` finds it.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence

from headroom.state.keys import make_key
from headroom.state.store import Store
from headroom.transforms.retrieval import TOOL_NAME

KEY_CHARS = 16
_KEY_RE = re.compile(rf"^[0-9a-f]{{{KEY_CHARS}}}$")
_COMPRESS_OVER = 4096  # bytes; smaller originals are stored raw
#: A marker's key: its one run of 16 hex digits, whatever the wording around it.
MARKER_KEY = re.compile(r"\[headroom:[^\]]*?\b([0-9a-f]{16})\b[^\]]*\]")
MARKER_RANGES = 3  # line ranges a marker names; the rest are counted ("+5 more"), each has its note in place
TOOL_KIND = "ccrtool"  # store key kind of the record naming an original's tool


def content_key(text: str) -> str:
    """Stable retrieval key for an original block (same content → same key)."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:KEY_CHARS]


def is_key(key: str) -> bool:
    return bool(_KEY_RE.match(key))


def store_key(caller: str, key: str) -> str:
    return make_key("ccr", caller, key)


def tool_key(caller: str, key: str) -> str:
    """Where the name of the tool whose output ``key`` is lives (same caller partition and TTL
    as the original)."""
    return make_key(TOOL_KIND, caller, key)


def marker_keys(text: str) -> list[str]:
    """The retrieval keys named by the markers in ``text``, in order."""
    return MARKER_KEY.findall(text)


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def marker(omitted: int, total: int, unit: str, key: str, ranges: Sequence[tuple[int, int]] = ()) -> str:
    """The visible note that content was left out and how to get it back (module docstring).

    ``omitted`` of ``total`` ``unit`` ("lines", "rows", "items", "matches", "paths", "words")
    were left out; ``ranges``: the original's lines left out, ``(first, last)`` 1-based and
    inclusive, in order, when the compressor knows them."""
    head = f"[headroom: {omitted} of {total} {unit} omitted"
    if not ranges:
        return f'{head}; {TOOL_NAME} key={key} query="…"]'
    where = ", ".join(_span(first, last) for first, last in ranges[:MARKER_RANGES])
    if len(ranges) > MARKER_RANGES:
        where += f", +{len(ranges) - MARKER_RANGES} more"
    if unit != "lines":
        where = "lines " + where
    return f'{head} ({where}); {TOOL_NAME} key={key} lines="{_span(*ranges[0])}" or query="…"]'


def encode_original(text: str) -> bytes:
    """Store format: ``r`` + UTF-8, or ``z`` + zlib(UTF-8) for large originals."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) > _COMPRESS_OVER:
        return b"z" + zlib.compress(raw, 1)
    return b"r" + raw


def decode_original(value: bytes) -> str:
    tag, payload = value[:1], value[1:]
    if tag == b"z":
        payload = zlib.decompress(payload)
    elif tag != b"r":
        raise ValueError("unknown CCR value format")
    return payload.decode("utf-8", "surrogatepass")


async def retrieve(store: Store, caller: str, key: str) -> str | None:
    """The original text stored under ``key`` for this caller, or None if unknown/expired."""
    if not is_key(key):
        return None
    value = await store.get(store_key(caller, key))
    if value is None:
        return None
    return decode_original(value)
