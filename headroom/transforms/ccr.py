"""CCR: compress, cache, retrieve.

Whenever a compressor drops content, the original block is stored under a key derived from
its content, and the compressed text carries a visible marker naming that key, so the model
(or the user) can fetch what was left out via ``GET /v1/retrieve/{key}``. Originals are
partitioned by the caller hash: another API key cannot read them.
"""

from __future__ import annotations

import hashlib
import re
import zlib

from headroom.state.keys import make_key
from headroom.state.store import Store

KEY_CHARS = 16
_KEY_RE = re.compile(rf"^[0-9a-f]{{{KEY_CHARS}}}$")
_COMPRESS_OVER = 4096  # bytes; smaller originals are stored raw


def content_key(text: str) -> str:
    """Stable retrieval key for an original block (same content → same key)."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:KEY_CHARS]


def is_key(key: str) -> bool:
    return bool(_KEY_RE.match(key))


def store_key(caller: str, key: str) -> str:
    return make_key("ccr", caller, key)


def marker(omitted: int, total: int, unit: str, key: str) -> str:
    """The visible note that content was left out and how to get it back."""
    return f"[headroom: {omitted} of {total} {unit} omitted; retrieve with key {key}]"


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
