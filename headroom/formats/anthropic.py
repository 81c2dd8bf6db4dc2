"""Anthropic Messages (``POST /v1/messages``): Claude Code, the ``anthropic`` SDK.

Tool output sits in ``tool_result`` blocks of user messages (string content or its text
parts); ``is_error`` results are short and needed verbatim, so they are never candidates.
The calls are the assistant's ``tool_use`` (and ``server_tool_use``) blocks. Usage is spread
over a stream's ``message_start`` (input, cache) and ``message_delta`` (output): the latest
figure of each field wins. Errors are ``{"type": "error", "error": {"type", "message"}}``;
rate limits are described by ``anthropic-ratelimit-*`` headers with RFC 3339 reset times.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from headroom.formats._anthropic_tools import AnthropicToolLoop
from headroom.formats.base import (
    USAGE_OBJECT,
    Block,
    Path,
    Route,
    ToolLoop,
    content_chars,
    dumps,
    iso_after,
    max_output_tokens,
    messages_of,
    role,
    tools_chars,
    top_level_usage,
    turn_units,
    user_text,
)
from headroom.pricing import Usage
from headroom.savings import cache_ttls

# Anthropic documents one error type per status; unlisted statuses fall back to api_error.
_ERROR_TYPES = {
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
_STREAM_FAILED = re.compile(rb'event: error|"error"\s*:\s*\{')


def iter_outputs(messages: list, min_chars: int = 0) -> Iterator[tuple[Path, str, str | None]]:
    """(path, text, tool_use_id) of every tool_result text at least ``min_chars`` long."""
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") != "user":
            continue
        content = msg.get("content")
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            if not isinstance(block, dict) or block.get("type") != "tool_result" or block.get("is_error"):
                continue
            inner = block.get("content")
            tool_id = block.get("tool_use_id")
            if isinstance(inner, str):
                if len(inner) >= min_chars:
                    yield (i, j, None), inner, tool_id
            elif isinstance(inner, list):
                for k, part in enumerate(inner):
                    if isinstance(part, dict) and part.get("type") == "text":
                        text = part.get("text")
                        if isinstance(text, str) and len(text) >= min_chars:
                            yield (i, j, k), text, tool_id


def calls(messages: list) -> dict[str, tuple[str, dict | None]]:
    """tool_use id → (tool name, its input) of the assistant's calls."""
    found: dict[str, tuple[str, dict | None]] = {}
    for msg in messages:
        if not isinstance(msg, dict) or msg.get("role") != "assistant":
            continue
        content = msg.get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") in ("tool_use", "server_tool_use"):
                    if isinstance(block.get("id"), str) and isinstance(block.get("name"), str):
                        tool_input = block.get("input")
                        found[block["id"]] = (block["name"], tool_input if isinstance(tool_input, dict) else None)
    return found


def call_ids(message: dict) -> tuple[set[str], set[str]]:
    """(tool_use ids issued, tool_use ids answered) by one message."""
    issued: set[str] = set()
    answered: set[str] = set()
    content = message.get("content")
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind in ("tool_use", "server_tool_use") and block.get("id"):
                issued.add(block["id"])
            elif kind == "tool_result" and block.get("tool_use_id"):
                answered.add(block["tool_use_id"])
    return issued, answered


def user_texts(messages: list) -> Iterator[str]:
    """The text of each user message (tool results aside), newest first."""
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            yield user_text(msg.get("content"))


class AnthropicMessages:
    name = "anthropic"
    provider = "anthropic"
    upstream_option = "anthropic_api_url"
    window_family = "anthropic"
    default_window = 200_000
    conversation_field = "messages"
    routes = (Route("/v1/messages", "/v1/messages", "anthropic_messages"),)
    passthrough_prefixes: tuple[tuple[str, str, str], ...] = ()
    credential_headers = ("x-api-key", "authorization")
    budget_code = "budget_exceeded"
    usage_marker = USAGE_OBJECT
    tool_loop: ToolLoop | None = AnthropicToolLoop()

    def claims_path(self, path: str) -> bool:
        return path.startswith("/v1/messages")

    def claims_headers(self, headers) -> bool:
        """Anthropic clients always send ``x-api-key`` or ``anthropic-version``."""
        return "x-api-key" in headers or "anthropic-version" in headers

    def is_llm_call(self, method: str, path: str) -> bool:
        return False  # its one LLM route is static

    def refuse_other_method(self, method, path, headers):
        return None

    def query_credentials(self, query) -> list[tuple[str, str]]:
        return []

    def cache_query(self, query, query_string: str) -> str:
        return query_string  # ``?beta=true`` changes the answer

    def model_and_stream(self, body: dict, path: str, query) -> tuple[str | None, bool]:
        model = body.get("model")
        return (model if isinstance(model, str) else None), body.get("stream") is True

    def logged_messages(self, body: dict):
        return body.get("messages")

    def prepare(self, body: dict) -> bool:
        return False  # streams always report usage

    def has_block(self, body: dict, min_chars: int) -> bool:
        messages = body.get("messages")
        return type(messages) is list and any(True for _ in iter_outputs(messages, min_chars))

    def blocks(self, body: dict, min_chars: int = 0) -> list[Block]:
        messages = messages_of(body)
        found = list(iter_outputs(messages, min_chars))
        by_id = calls(messages) if found else {}
        return [Block(path, text, *(by_id[ref] if ref in by_id else (None, None))) for path, text, ref in found]

    def user_texts(self, body: dict) -> Iterator[str]:
        return user_texts(messages_of(body))

    def rewrite(self, body: dict, new_texts: dict[Path, str]) -> dict:
        """A new body with the given texts replaced; shares every untouched object with ``body``."""
        messages = list(messages_of(body))
        by_message: dict[int, list[tuple[Path, str]]] = {}
        for path, text in new_texts.items():
            by_message.setdefault(path[0], []).append((path, text))
        for i, changes in by_message.items():
            msg = dict(messages[i])
            content = list(msg["content"])
            copied: set[int] = set()
            for (_, j, k), text in changes:
                assert j is not None  # an Anthropic path always names its content block
                if j not in copied:
                    content[j] = dict(content[j])
                    if k is not None:
                        content[j]["content"] = list(content[j]["content"])
                    copied.add(j)
                if k is None:
                    content[j]["content"] = text
                else:
                    parts = content[j]["content"]
                    parts[k] = {**parts[k], "text": text}
            msg["content"] = content
            messages[i] = msg
        out = dict(body)
        out["messages"] = messages
        return out

    def conversation(self, body: dict) -> list:
        return messages_of(body)

    def fixed_parts(self, body: dict) -> list:
        return [body.get("system"), body.get("tools")]

    def cache_ttls(self, body: dict, paths: list[Path]) -> dict:
        """Each block's covering ``cache_control`` breakpoint, for the dollars saved."""
        return cache_ttls(body["messages"], paths)

    def fittable(self, body: dict) -> bool:
        return type(body.get("messages")) is list

    def window_chars(self, body: dict) -> int:
        return (content_chars(body["messages"]) + content_chars([{"content": body.get("system")}])
                + tools_chars(body.get("tools")))

    def units(self, messages: list) -> list[list[int]]:
        return turn_units(messages, role, call_ids)

    def max_output_tokens(self, body: dict) -> int | None:
        return max_output_tokens(body)

    def reported_usage(self, body) -> dict | None:
        return top_level_usage(body)

    def usage(self, reported: dict) -> Usage:
        return Usage.from_anthropic(reported)

    def stream_usage(self, event: dict, reported: dict) -> tuple[dict | None, bool]:
        found = event.get("usage")
        if found is None and isinstance(event.get("message"), dict):
            found = event["message"].get("usage")  # message_start nests it
        if not isinstance(found, dict):
            return None, False
        return {**reported, **{k: v for k, v in found.items() if v is not None}}, False

    def error_body(self, status: int, message: str, code: str | None = None) -> bytes:
        kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return dumps({"type": "error", "error": {"type": kind, "message": message}})

    def stream_error_event(self, message: str, last_sent: bytes = b"") -> bytes:
        payload = dumps({"type": "error", "error": {"type": "api_error", "message": message}})
        return b"event: error\ndata: " + payload + b"\n\n"

    def stream_failed(self, last_events: bytes) -> bool:
        return _STREAM_FAILED.search(last_events) is not None

    def rate_limit_headers(self, kind: str, limit: int, remaining: int, reset_seconds: float) -> dict[str, str]:
        return {
            f"anthropic-ratelimit-{kind}-limit": str(limit),
            f"anthropic-ratelimit-{kind}-remaining": str(max(0, remaining)),
            f"anthropic-ratelimit-{kind}-reset": iso_after(reset_seconds),
        }


ANTHROPIC = AnthropicMessages()
