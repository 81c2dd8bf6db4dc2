"""The exact-match response cache: identical requests from the same caller get the stored answer.

The key is a hash of the canonical request — everything that shapes the answer (model,
system, messages, tools, sampling and output parameters, streaming or not) with keys
sorted — and each caller (a hash of the API key) has its own partition, so no caller ever
receives another's answer. Only complete, successful answers are stored; streamed ones
are stored as the SSE bytes the client received and replayed as a valid stream.

Request ``cache-control: no-cache`` skips the lookup (the fresh answer is stored);
``no-store`` skips the cache entirely.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import ujson

#: Fields that do not change the answer: per-user tags and tracing.
_IGNORED_FIELDS = frozenset({"metadata", "user"})
#: Answers larger than this are not stored (the cache bounds entries, not bytes).
MAX_ENTRY_BYTES = 1024 * 1024
_SEPARATOR = b"\n"


@dataclass(frozen=True)
class CachePolicy:
    lookup: bool
    store: bool

    @property
    def label(self) -> str:
        return "miss" if self.lookup else "bypass"


_OFF = CachePolicy(lookup=False, store=False)
_STORE_ONLY = CachePolicy(lookup=False, store=True)
_ON = CachePolicy(lookup=True, store=True)


def policy(enabled: bool, cache_control: str) -> CachePolicy:
    if not enabled:
        return _OFF
    if not cache_control:  # nearly every request: no directives to read
        return _ON
    directives = cache_control.lower()
    if "no-store" in directives:
        return _OFF
    return _STORE_ONLY if "no-cache" in directives else _ON


def request_key(path: str, body: dict) -> str:
    canonical = body
    if not _IGNORED_FIELDS.isdisjoint(body):  # most bodies have none: no copy
        canonical = {k: v for k, v in body.items() if k not in _IGNORED_FIELDS}
    encoded = ujson.dumps(canonical, sort_keys=True, ensure_ascii=False, escape_forward_slashes=False)
    digest = _SHA256.copy()  # cheaper than looking SHA-256 up in OpenSSL again
    digest.update(path.encode() + b"\0")
    # surrogatepass: a lone surrogate (legal in JSON as an escape) has no UTF-8 form
    digest.update(encoded.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


_SHA256 = hashlib.sha256()


@dataclass(frozen=True)
class CachedAnswer:
    content_type: str
    body: bytes

    def encode(self) -> bytes:
        return self.content_type.encode() + _SEPARATOR + self.body

    @classmethod
    def decode(cls, raw: bytes) -> CachedAnswer:
        content_type, _, body = raw.partition(_SEPARATOR)
        return cls(content_type.decode(), body)

    @property
    def is_stream(self) -> bool:
        return self.content_type.startswith("text/event-stream")
