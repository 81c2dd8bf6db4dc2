"""OpenAI Chat Completions (``POST /v1/chat/completions``), the format every
OpenAI-compatible API speaks: the ``openai`` SDK, most agents.

Tool output sits in ``tool`` messages (and legacy ``function`` messages, named on the
message); the calls are the assistant's ``tool_calls`` with JSON-string ``arguments``. A
stream reports usage only when asked (``stream_options.include_usage``): Headroom asks for it
itself (:meth:`ChatCompletions.prepare`) and the relay removes that chunk again when the
client had not asked. Errors, usage and rate-limit headers: :mod:`headroom.formats._openai`;
the retrieval tool's loop: :mod:`headroom.formats._chat_tools`.
"""

from __future__ import annotations

from collections.abc import Iterator

from headroom.formats import _openai
from headroom.formats._chat_tools import ChatToolLoop
from headroom.formats.base import (
    USAGE_OBJECT,
    Block,
    Path,
    Route,
    ToolLoop,
    arguments,
    content_chars,
    dumps,
    max_output_tokens,
    messages_of,
    role,
    text_parts,
    tools_chars,
    top_level_usage,
    turn_units,
    user_text,
)


def iter_outputs(messages: list, min_chars: int = 0) -> Iterator[tuple[Path, str, str | None]]:
    """(path, text, tool_call_id or None) of every tool message text."""
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("tool", "function"):
            continue
        ref = msg.get("tool_call_id") if msg.get("role") == "tool" else None
        for k, text in text_parts(msg.get("content"), min_chars):
            yield (i, k, None), text, ref


def calls(messages: list) -> dict[str, tuple[str, dict | None]]:
    """tool_call id → (function name, its arguments when small enough to parse)."""
    found: dict[str, tuple[str, dict | None]] = {}
    for msg in messages:
        if not isinstance(msg, dict) or msg.get("role") != "assistant":
            continue
        for call in msg.get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("id"), str):
                fn = call.get("function")
                if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                    found[call["id"]] = (fn["name"], arguments(fn.get("arguments")))
    return found


def call_ids(message: dict) -> tuple[set[str], set[str]]:
    """(tool_call ids issued, tool_call ids answered) by one message."""
    issued = {call["id"] for call in message.get("tool_calls") or () if isinstance(call, dict) and call.get("id")}
    answered = {message["tool_call_id"]} if message.get("tool_call_id") else set()
    return issued, answered


def ask_for_stream_usage(body: dict) -> bool:
    """Make a streaming request report usage; True if the body had to change."""
    options = body.get("stream_options")
    if body.get("stream") is not True or (isinstance(options, dict) and options.get("include_usage")):
        return False
    body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return True


class ChatCompletions:
    name = "chat"
    provider = _openai.OPENAI_PROVIDER
    upstream_option = _openai.UPSTREAM_OPTION
    window_family = "openai"
    default_window = 128_000
    conversation_field = "messages"
    routes = (
        Route("/v1/chat/completions", "/v1/chat/completions", "openai_chat"),
        # Some OpenAI-compatible clients are configured with a base URL that lacks ``/v1``.
        Route("/chat/completions", "/v1/chat/completions", "openai_chat_unversioned"),
    )
    passthrough_prefixes = (("/chat/completions", "/v1/chat/completions", "openai_chat_unversioned_passthrough"),)
    credential_headers = _openai.CREDENTIAL_HEADERS
    budget_code = _openai.BUDGET_CODE
    usage_marker = USAGE_OBJECT
    tool_loop: ToolLoop | None = ChatToolLoop()  # the retrieval tool (headroom.formats._chat_tools)

    def claims_path(self, path: str) -> bool:
        return path.endswith("/chat/completions")

    def claims_headers(self, headers) -> bool:
        return False  # the default: unrecognised requests go to OpenAI, the de-facto generic API

    def is_llm_call(self, method: str, path: str) -> bool:
        return False

    def refuse_other_method(self, method, path, headers):
        return None

    def query_credentials(self, query) -> list[tuple[str, str]]:
        return []

    def cache_query(self, query, query_string: str) -> str:
        return query_string

    def model_and_stream(self, body: dict, path: str, query) -> tuple[str | None, bool]:
        model = body.get("model")
        return (model if isinstance(model, str) else None), body.get("stream") is True

    def logged_messages(self, body: dict):
        return body.get("messages")

    def prepare(self, body: dict) -> bool:
        return ask_for_stream_usage(body)

    def has_block(self, body: dict, min_chars: int) -> bool:
        messages = body.get("messages")
        return type(messages) is list and any(True for _ in iter_outputs(messages, min_chars))

    def blocks(self, body: dict, min_chars: int = 0) -> list[Block]:
        messages = messages_of(body)
        found = list(iter_outputs(messages, min_chars))
        if not found:
            return []
        by_id = calls(messages)
        blocks = []
        for path, text, ref in found:
            if ref:
                name, tool_input = by_id.get(ref, (None, None))
            else:  # legacy "function" role message: the name is on the message
                name, tool_input = messages[path[0]].get("name"), None
            blocks.append(Block(path, text, name if isinstance(name, str) else None, tool_input))
        return blocks

    def user_texts(self, body: dict) -> Iterator[str]:
        for msg in reversed(messages_of(body)):
            if isinstance(msg, dict) and msg.get("role") == "user":
                yield user_text(msg.get("content"))

    def rewrite(self, body: dict, new_texts: dict[Path, str]) -> dict:
        """A new body with the given texts replaced; shares every untouched object with ``body``."""
        messages = list(messages_of(body))
        by_message: dict[int, list[tuple[Path, str]]] = {}
        for path, text in new_texts.items():
            by_message.setdefault(path[0], []).append((path, text))
        for i, changes in by_message.items():
            msg = dict(messages[i])
            content = msg["content"]
            for (_, k, _unused), text in changes:
                if k is None:
                    content = text
                else:
                    if content is msg["content"]:
                        content = list(content)
                    content[k] = {**content[k], "text": text}
            msg["content"] = content
            messages[i] = msg
        out = dict(body)
        out["messages"] = messages
        return out

    def conversation(self, body: dict) -> list:
        return messages_of(body)

    def fixed_parts(self, body: dict) -> list:
        return [body.get("system"), body.get("tools")]  # system messages count as messages

    def cache_ttls(self, body: dict, paths: list[Path]) -> dict:
        return {}  # OpenAI caches automatically: no breakpoints

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

    usage = staticmethod(_openai.usage)
    stream_usage = staticmethod(_openai.stream_usage)
    error_body = staticmethod(_openai.error_body)
    stream_failed = staticmethod(_openai.stream_failed)
    rate_limit_headers = staticmethod(_openai.rate_limit_headers)

    def stream_error_event(self, message: str, last_sent: bytes = b"") -> bytes:
        error = {"message": message, "type": "api_error", "param": None, "code": "stream_interrupted"}
        return b"data: " + dumps({"error": error}) + b"\n\n"


CHAT = ChatCompletions()
