"""Caller identity: a keyed hash of the API key, never the key itself.

Every piece of per-caller state (cache partition, buckets, budgets, logs) is keyed by
``caller_hash(secret, api_key)``. The secret is per deployment and must be the same in
every worker and instance sharing a store, or they would not recognise the same caller:
take it from configuration, or from :meth:`headroom.state.store.Store.shared_secret`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

#: Hex characters kept: 32 = 128 bits, ample against collisions between callers.
HASH_HEX_CHARS = 32


def caller_hash(secret: bytes, api_key: str) -> str:
    """HMAC-SHA256 of the API key under the deployment secret, as 32 hex characters."""
    if not secret:
        raise ValueError("caller_hash needs a non-empty secret")
    return hmac.new(secret, api_key.encode(), hashlib.sha256).hexdigest()[:HASH_HEX_CHARS]


def new_secret() -> bytes:
    """A fresh random 32-byte deployment secret."""
    return secrets.token_bytes(32)


def secret_from_text(text: str) -> bytes:
    """A secret given as configuration text (e.g. ``HEADROOM_STATE_SECRET``): hex when it
    is valid hex of at least 16 bytes, its UTF-8 bytes otherwise."""
    text = text.strip()
    if not text:
        raise ValueError("empty secret")
    try:
        raw = bytes.fromhex(text)
        if len(raw) >= 16:
            return raw
    except ValueError:
        pass
    return text.encode()
