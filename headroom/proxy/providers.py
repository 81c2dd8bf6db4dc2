"""What differs between Anthropic and OpenAI: which upstream, how errors look, how streams fail.

Everything provider-specific that the routes need sits here, so a route can stay a short
description of one request's path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import ujson

from headroom.config import ProxyConfig
from headroom.transforms.responses import FORMAT as RESPONSES_FORMAT

ProviderName = Literal["anthropic", "openai"]

# Anthropic documents one error type per status; unlisted statuses fall back to api_error.
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_OPENAI_ERROR_TYPES = {
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


def _dumps(value) -> bytes:
    return ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False).encode()


@dataclass(frozen=True)
class Provider:
    name: ProviderName

    def upstream_base(self, config: ProxyConfig) -> str:
        return config.anthropic_api_url if self.name == "anthropic" else config.openai_api_url

    def error_body(self, status: int, message: str, code: str | None = None) -> bytes:
        """The JSON body this provider itself would send for an error with ``status``."""
        if self.name == "anthropic":
            kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
            return _dumps({"type": "error", "error": {"type": kind, "message": message}})
        kind, default_code = _OPENAI_ERROR_TYPES.get(
            status, ("api_error" if status >= 500 else "invalid_request_error", None)
        )
        error = {"message": message, "type": kind, "param": None, "code": code or default_code}
        return _dumps({"error": error})

    def stream_error_event(self, message: str, wire: str = "", sequence_number: int = 0) -> bytes:
        """The final SSE event that tells a streaming client the upstream broke mid-way.

        Responses API streams (``wire`` ``"responses"``) end with that API's ``error`` event
        (``type``, ``code``, ``message``, ``param``, ``sequence_number``: the SDK's
        ``ResponseErrorEvent``), which also nests the error as ``error`` so that the
        ``openai`` SDK raises ``APIError`` on it instead of yielding it quietly."""
        if wire == RESPONSES_FORMAT:
            code = "stream_interrupted"
            payload = _dumps({"type": "error", "code": code, "message": message, "param": None,
                              "sequence_number": sequence_number,
                              "error": {"type": "api_error", "code": code, "message": message, "param": None}})
            return b"event: error\ndata: " + payload + b"\n\n"
        if self.name == "anthropic":
            payload = _dumps({"type": "error", "error": {"type": "api_error", "message": message}})
            return b"event: error\ndata: " + payload + b"\n\n"
        error = {"message": message, "type": "api_error", "param": None, "code": "stream_interrupted"}
        return b"data: " + _dumps({"error": error}) + b"\n\n"


ANTHROPIC = Provider("anthropic")
OPENAI = Provider("openai")

#: Request body formats the LLM routes accept, by upstream path; a provider's own name
#: stands for its main format. Also the pipeline's ``provider`` argument.
_WIRE_FORMATS = {"/v1/responses": RESPONSES_FORMAT}


def wire_format(provider: Provider, path: str) -> str:
    """The body format of an LLM request to ``path``: ``"anthropic"``, ``"openai"`` (Chat
    Completions) or ``"responses"``."""
    return _WIRE_FORMATS.get(path, provider.name)


def provider_for_path(path: str, headers) -> Provider:
    """Pick the upstream for a request: by route first, then by the headers the client sent.

    Anthropic clients always send ``x-api-key`` or ``anthropic-version``; OpenAI clients send
    ``authorization: Bearer``. Anything unrecognised goes to OpenAI, the de-facto generic API.
    """
    if path.startswith("/v1/messages"):
        return ANTHROPIC
    if path.endswith("/chat/completions") or path.startswith(("/v1/responses", "/responses")):
        return OPENAI
    if "x-api-key" in headers or "anthropic-version" in headers:
        return ANTHROPIC
    return OPENAI
