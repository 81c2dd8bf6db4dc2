"""Where everything lives in the store: the key layout and the bounds of the global entries.

Per-caller keys are ``hr:{kind}:{callerhash}:{id}`` (:func:`make_key`); ``callerhash`` is a
keyed hash of the API key, never the key. Entries shared by every caller use ``_all`` in
the caller's place. Every entry has a TTL, sits under an LRU bound, or leaves through the
due index (:data:`DUE_INDEX_KEY`).
"""

from __future__ import annotations


def make_key(kind: str, caller: str, ident: str) -> str:
    """Build a namespaced store key; ``caller`` is already a hash, never an API key."""
    return f"hr:{kind}:{caller}:{ident}"


#: Per-block entries of the compression pipeline, ``hr:{kind}:{callerhash}:{tool class}.{digest}``
#: (same ident for both), with the memo's TTL.
MEMO_KIND = "memo"  # what was sent for a tool output the first time (transforms.memo)
SENT_KIND = "sent"  # digest of those bytes and the terms used (transforms.prefix_guard)


#: Per caller and tool (``hr:{kind}:{callerhash}:{tool}``), the retrieval policy's state
#: (:mod:`headroom.state.tool_use`): its counts (a hash in Redis, TTL ``counts_ttl_s``
#: refreshed on every write) and, while it is backed off, a flag (a plain string, so that the
#: pipeline's ``get_many`` reads it with the memo; TTL: the back-off's end).
TOOL_USE_KIND = "tooluse"
BACKOFF_KIND = "backoff"
#: Every back-off now in force, for ``/stats``: ``"{callerhash}|{tool}"`` -> its end (ms), a
#: sorted set pruned on every write, at most :data:`BACKOFF_INDEX_LIMIT` members, expiring with
#: the last back-off.
BACKOFF_INDEX_KEY = "hr:backoff:_all:index"
BACKOFF_INDEX_LIMIT = 10_000


def tool_use_key(caller: str, tool: str) -> str:
    return make_key(TOOL_USE_KIND, caller, tool)


def backoff_key(caller: str, tool: str) -> str:
    return make_key(BACKOFF_KIND, caller, tool)


def bucket_key(caller: str) -> str:
    """One caller's request and token buckets (one entry for both)."""
    return make_key("rl", caller, "b")


def cache_key(caller: str, key: str) -> str:
    """One cached answer in the caller's partition of the response cache."""
    return make_key("cache", caller, key)


def budget_prefix(caller: str, scope: str) -> str:
    """``hr:budget:{global|callerhash}`` — the budget period's id is appended as the last part."""
    return f"hr:budget:{caller if scope == 'key' else 'global'}"


#: Rate-limit buckets and budget counters carry no TTL, so that a Redis evicting with
#: ``volatile-lru`` never touches them; this sorted set (key -> when it is dead, ms) lets the
#: guard script delete them once they are (see :mod:`headroom.state.scripts`).
DUE_INDEX_KEY = "hr:due:_all:index"
#: Where the cache's LRU index lives (one index for every partition: one global bound).
CACHE_INDEX_KEY = "hr:cache:_all:lru"
#: The per-deployment HMAC secret shared by every worker and instance (see Store.shared_secret).
SECRET_KEY = "hr:meta:_all:secret"

#: Global request statistics (every worker and instance adds to the same keys).
STATS_COUNTERS_KEY = "hr:stats:_all:counters"
STATS_SAMPLES_KEY = "hr:stats:_all:samples:{name}"
STATS_RECENT_KEY = "hr:stats:_all:recent"
STATS_TTL_SECONDS = 30 * 24 * 3600  # refreshed on every write: idle deployments age out
STATS_SAMPLE_LIMIT = 10_000  # latency samples kept per series (the most recent)
STATS_RECENT_LIMIT = 50
