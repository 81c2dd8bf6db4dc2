"""Which headers cross the proxy, in each direction.

Everything end-to-end is forwarded unchanged (API keys, ``anthropic-beta``, ``user-agent``,
custom ``x-*`` headers, request ids, rate-limit headers). Hop-by-hop headers belong to one
connection only, and length/encoding headers are recomputed for the bytes actually sent.
"""

from __future__ import annotations

from collections.abc import Iterable

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

# Recomputed for the bytes Headroom actually sends on: a body that was decompressed (or
# rewritten) must never carry the old length or encoding.
_RECOMPUTED = frozenset({"content-length", "content-encoding"})

# Headroom's own admin token is addressed to the proxy: it never travels on to the upstream.
_DROP_FROM_REQUEST = HOP_BY_HOP | _RECOMPUTED | {"host", "accept-encoding", "expect", "x-headroom-admin-token"}
_DROP_FROM_RESPONSE = HOP_BY_HOP | _RECOMPUTED


def _connection_listed(items: Iterable[tuple[str, str]]) -> set[str]:
    """Headers named in ``Connection:`` are hop-by-hop for this message too (RFC 9110 7.6.1)."""
    named: set[str] = set()
    for name, value in items:
        if name.lower() == "connection":
            named.update(part.strip().lower() for part in value.split(",") if part.strip())
    return named


def _kept(items: Iterable[tuple[str, str]], dropped: frozenset[str]) -> list[tuple[str, str]]:
    """``items`` less the ``dropped`` names and those ``Connection:`` lists, in one pass over
    their lowered names (a ``Connection:`` header is rare: its names are read only then)."""
    items = list(items)
    lowered = [name.lower() for name, _ in items]
    if "connection" in lowered:
        dropped = dropped | _connection_listed(items)
    return [item for item, name in zip(items, lowered) if name not in dropped]


def request_headers(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Client headers to send upstream, in their original order and spelling."""
    forwarded = _kept(items, _DROP_FROM_REQUEST)
    # Ask only for encodings the upstream client can decode; the client gets plain bytes.
    forwarded.append(("accept-encoding", "gzip, deflate"))
    return forwarded


def response_headers(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Upstream headers to send back to the client."""
    return _kept(items, _DROP_FROM_RESPONSE)
