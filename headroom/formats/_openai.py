"""What OpenAI's two formats (Chat Completions and Responses) share: error bodies, the
rate-limit headers, how usage is read, and how a failed stream is recognised.

A helper module of :mod:`headroom.formats.chat` and :mod:`headroom.formats.responses`; it
is no format of its own.
"""

from __future__ import annotations

import re

from headroom.formats.base import dumps
from headroom.pricing import Usage

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("api_error", "internal_error"),
    502: ("api_error", "upstream_unreachable"),
    503: ("api_error", "service_unavailable"),
    504: ("api_error", "upstream_timeout"),
}
# An error object (``"error": null``, as in every Responses API response object, is none),
# or a Responses stream that ended failed or incomplete.
_STREAM_FAILED = re.compile(rb'event: error|"error"\s*:\s*\{|"type"\s*:\s*"response\.(?:failed|incomplete)"')

OPENAI_PROVIDER = "openai"
UPSTREAM_OPTION = "openai_api_url"
CREDENTIAL_HEADERS = ("authorization", "api-key")  # api-key: Azure OpenAI
BUDGET_CODE = "insufficient_quota"


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}``, as OpenAI sends it."""
    kind, default_code = _ERROR_TYPES.get(status, ("api_error" if status >= 500 else "invalid_request_error", None))
    error = {"message": message, "type": kind, "param": None, "code": code or default_code}
    return dumps({"error": error})


def usage(reported: dict) -> Usage:
    return Usage.from_openai(reported)


def stream_usage(event: dict, reported: dict) -> tuple[dict | None, bool]:
    """The usage in one stream event, and whether the event is Chat Completions' usage-only
    chunk (no choices). Responses streams carry it in ``response.completed``, ``.incomplete``
    or ``.failed``. The two are read alike: a pass-through stream may be either."""
    if isinstance(event.get("usage"), dict):
        return event["usage"], not event.get("choices")
    response = event.get("response")
    if isinstance(response, dict) and isinstance(response.get("usage"), dict):
        return response["usage"], False
    return None, False


def stream_failed(last_events: bytes) -> bool:
    return _STREAM_FAILED.search(last_events) is not None


def rate_limit_headers(kind: str, limit: int, remaining: int, reset_seconds: float) -> dict[str, str]:
    return {
        f"x-ratelimit-limit-{kind}": str(limit),
        f"x-ratelimit-remaining-{kind}": str(max(0, remaining)),
        f"x-ratelimit-reset-{kind}": f"{max(0.0, reset_seconds):.3f}s",
    }
