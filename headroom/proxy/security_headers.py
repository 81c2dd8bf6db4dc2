"""Security headers on the responses Headroom builds itself — never on relayed upstream ones.

Two constant dicts, merged where each response is built (no middleware on the hot path):

- :data:`OWN` on every response Headroom generates: no content sniffing, never framed,
  nothing loaded or run should a browser render it (``/``, ``/health``).
- :data:`PRIVATE` adds ``cache-control: no-store`` where the content belongs to a caller or
  an operator: its errors, ``/stats``, ``/metrics``, ``/v1/retrieve``, ``/v1/compress``, the
  OpenAPI description.

Answers relayed from the upstream (and cached answers replayed) carry the upstream's own
headers, unchanged: Headroom is transparent there.
"""

from __future__ import annotations

OWN: dict[str, str] = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}

PRIVATE: dict[str, str] = {**OWN, "cache-control": "no-store"}
