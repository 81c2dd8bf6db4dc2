"""The OpenAI Responses API (``POST /v1/responses``): Codex CLI, the Agents SDK.

A Responses body carries its conversation in ``input``: a string (one user message) or a
list of *items*. Tool output is in ``function_call_output`` and ``custom_tool_call_output``
items (``output``: a string, or a list of ``input_text`` / image / file parts); those are
the only candidates, exactly like ``tool`` messages in Chat Completions. ``instructions``,
system and developer messages, user and assistant messages, the calls themselves and the
tool definitions are never touched; every other field (``prompt_cache_key``, ``store``,
``include``, item ids, ``previous_response_id`` …) passes unchanged.

With ``previous_response_id`` the upstream keeps the earlier turns: ``input`` holds only
the new items, so only those are visible here (and compressed), and context fitting leaves
the request alone (:meth:`ResponsesApi.fittable`).

Paths are ``(item index, part index or None, None)``. A stream that breaks ends with this
API's own ``error`` event, numbered after the events already sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from headroom.formats import _openai
from headroom.formats._responses_tools import ResponsesToolLoop
from headroom.formats.base import (
    USAGE_OBJECT,
    Block,
    Path,
    Refusal,
    Route,
    ToolLoop,
    arguments,
    dumps,
    max_output_tokens,
    tools_chars,
    top_level_usage,
    turn_units,
    user_text,
)

#: Item types that carry a tool's output, and the calls with the field holding their arguments.
OUTPUT_ITEMS = ("function_call_output", "custom_tool_call_output")
CALL_ITEMS = {"function_call": "arguments", "custom_tool_call": "input"}
_SEQUENCE_NUMBER = re.compile(rb'"sequence_number"\s*:\s*(\d{1,15})')


def items(body: dict) -> list:
    """The input items (``[]`` for a plain-string ``input``: nothing to compress there)."""
    value = body.get("input")
    return value if isinstance(value, list) else []


def iter_outputs(input_items: list, min_chars: int = 0) -> Iterator[tuple[Path, str, str | None]]:
    """(path, text, call_id) of every tool output text at least ``min_chars`` long."""
    for i, item in enumerate(input_items):
        if type(item) is not dict or item.get("type") not in OUTPUT_ITEMS:
            continue
        ref = item.get("call_id")
        output = item.get("output")
        if type(output) is str:
            if len(output) >= min_chars:
                yield (i, None, None), output, ref
        elif type(output) is list:
            for k, part in enumerate(output):
                if type(part) is dict and part.get("type") in ("input_text", "output_text", "text"):
                    text = part.get("text")
                    if type(text) is str and len(text) >= min_chars:
                        yield (i, k, None), text, ref


def calls(input_items: list) -> dict[str, tuple[str, object]]:
    """call_id → (tool name, raw arguments or custom input) of the calls in ``input``."""
    found: dict[str, tuple[str, object]] = {}
    for item in input_items:
        if type(item) is not dict:
            continue
        field = CALL_ITEMS.get(item.get("type", ""))
        if field and isinstance(item.get("call_id"), str) and isinstance(item.get("name"), str):
            found[item["call_id"]] = (item["name"], item.get(field))
    return found


def user_contents(input_items: list) -> Iterator:
    """Contents of the user messages, newest first."""
    for item in reversed(input_items):
        if type(item) is dict and item.get("role") == "user" and item.get("type", "message") == "message":
            yield item.get("content")


def input_chars(input_items: list) -> int:
    """Characters of text in the input items (message text, call arguments, tool outputs): a
    cheap input for the context-window check, which runs on every request."""
    total = 0
    for item in input_items:
        if type(item) is not dict:
            continue
        for key in ("content", "output"):
            value = item.get(key)
            if type(value) is str:
                total += len(value)
            elif type(value) is list:
                for part in value:
                    text = part.get("text") if type(part) is dict else None
                    if type(text) is str:
                        total += len(text)
        for key in ("arguments", "input"):  # function and custom tool calls
            value = item.get(key)
            if type(value) is str:
                total += len(value)
    return total


def side(item: dict) -> str | None:
    """Who said it: the role, or for an item without one, ``"tool"`` for a tool's output
    and ``"assistant"`` for what the model produced (reasoning, calls …)."""
    role = item.get("role")
    if role is not None or item.get("type") is None:
        return role
    return "tool" if item["type"] in OUTPUT_ITEMS else "assistant"


def call_ids(item: dict) -> tuple[set[str], set[str]]:
    """(call ids issued, call ids answered) by one item: calls carry a ``call_id``, answered
    by the output item with the same one."""
    kind = item.get("type")
    if kind in CALL_ITEMS and item.get("call_id"):
        return {item["call_id"]}, set()
    if kind in OUTPUT_ITEMS and item.get("call_id"):
        return set(), {item["call_id"]}
    return set(), set()


class ResponsesApi:
    name = "responses"
    provider = _openai.OPENAI_PROVIDER
    upstream_option = _openai.UPSTREAM_OPTION
    window_family = "openai"
    default_window = 128_000
    conversation_field = "input"
    routes = (
        Route("/v1/responses", "/v1/responses", "openai_responses"),
        Route("/responses", "/v1/responses", "openai_responses_unversioned"),
    )
    # ``/responses/{id}``, ``/cancel``, ``/input_items`` for clients configured without ``/v1``.
    passthrough_prefixes = (("/responses", "/v1/responses", "openai_responses_unversioned_passthrough"),)
    credential_headers = _openai.CREDENTIAL_HEADERS
    budget_code = _openai.BUDGET_CODE
    usage_marker = USAGE_OBJECT
    tool_loop: ToolLoop | None = ResponsesToolLoop()  # the retrieval tool (formats/_responses_tools.py)

    def claims_path(self, path: str) -> bool:
        return path.startswith(("/v1/responses", "/responses"))

    def claims_headers(self, headers) -> bool:
        return False

    def is_llm_call(self, method: str, path: str) -> bool:
        return False

    def refuse_other_method(self, method: str, path: str, headers) -> Refusal | None:
        """The Responses API over a WebSocket (``GET /v1/responses`` with ``Upgrade:
        websocket``) is refused with a 426, so that clients use HTTP. Codex with OpenAI's
        built-in provider asks for it first. On a 426 it switches to HTTP at once (measured
        with Codex CLI 0.171: one attempt); on a 405 it retries five times, about 6 s, before
        it does; a 400 fails its turn. Over HTTP every request gets what this proxy is for:
        compression, the cache, limits, budget and usage. A relayed socket would carry each
        turn as frames that this pipeline would have to parse anew, for no saving the HTTP
        path does not give."""
        upgrade = headers.get("upgrade", "").lower()
        if path == "/v1/responses" and method == "GET" and "websocket" in upgrade:
            return Refusal(426, "Headroom serves the Responses API over HTTP: use POST /v1/responses "
                                "(WebSocket transport is not supported)", "websocket_not_supported")
        return None

    def query_credentials(self, query) -> list[tuple[str, str]]:
        return []

    def cache_query(self, query, query_string: str) -> str:
        return query_string

    def model_and_stream(self, body: dict, path: str, query) -> tuple[str | None, bool]:
        model = body.get("model")
        return (model if isinstance(model, str) else None), body.get("stream") is True

    def logged_messages(self, body: dict):
        return body.get("input")  # may be a plain string

    def prepare(self, body: dict) -> bool:
        return False  # Responses streams always report usage

    def has_block(self, body: dict, min_chars: int) -> bool:
        return any(True for _ in iter_outputs(items(body), min_chars))

    def blocks(self, body: dict, min_chars: int = 0) -> list[Block]:
        input_items = items(body)
        found = list(iter_outputs(input_items, min_chars))
        by_id = calls(input_items) if found else {}
        blocks = []
        for path, text, ref in found:
            name, raw = by_id[ref] if ref in by_id else (None, None)
            tool_input = arguments(raw) if isinstance(raw, str) and raw[:1] == "{" else (
                {"input": raw} if isinstance(raw, str) else None)
            blocks.append(Block(path, text, name, tool_input))
        return blocks

    def user_texts(self, body: dict) -> Iterator[str]:
        if isinstance(body.get("input"), str):
            yield body["input"]
            return
        for content in user_contents(items(body)):
            yield user_text(content)

    def rewrite(self, body: dict, new_texts: dict[Path, str]) -> dict:
        """A new body with the given tool output texts replaced; shares everything else."""
        original = items(body)
        new_items = list(original)
        for (i, k, _unused), text in new_texts.items():
            if new_items[i] is original[i]:
                new_items[i] = dict(original[i])
                if type(original[i]["output"]) is list:
                    new_items[i]["output"] = list(original[i]["output"])
            if k is None:
                new_items[i]["output"] = text
            else:
                new_items[i]["output"][k] = {**new_items[i]["output"][k], "text": text}
        out = dict(body)
        out["input"] = new_items
        return out

    def conversation(self, body: dict) -> list:
        return items(body)

    def fixed_parts(self, body: dict) -> list:
        """What the model reads besides the input items: ``instructions`` and tool definitions."""
        return [body.get("instructions"), body.get("tools")]

    def cache_ttls(self, body: dict, paths: list[Path]) -> dict:
        return {}

    def fittable(self, body: dict) -> bool:
        """Whether context fitting may drop old items: the whole conversation is in ``input``
        (with ``previous_response_id`` the upstream holds the earlier turns)."""
        return not body.get("previous_response_id") and type(body.get("input")) is list

    def window_chars(self, body: dict) -> int:
        instructions = body.get("instructions")
        return (input_chars(items(body)) + (len(instructions) if type(instructions) is str else 0)
                + tools_chars(body.get("tools")))

    def units(self, messages: list) -> list[list[int]]:
        """One model response is several items in a row (``reasoning``, a ``message``,
        ``function_call`` …): they start one unit together, because the API refuses a call
        whose reasoning item is missing."""
        return turn_units(messages, side, call_ids)

    def max_output_tokens(self, body: dict) -> int | None:
        return max_output_tokens(body)

    def reported_usage(self, body) -> dict | None:
        return top_level_usage(body)  # a Responses body has it at the top too

    usage = staticmethod(_openai.usage)
    stream_usage = staticmethod(_openai.stream_usage)
    error_body = staticmethod(_openai.error_body)
    stream_failed = staticmethod(_openai.stream_failed)
    rate_limit_headers = staticmethod(_openai.rate_limit_headers)

    def stream_error_event(self, message: str, last_sent: bytes = b"") -> bytes:
        """This API's ``error`` event (``type``, ``code``, ``message``, ``param``,
        ``sequence_number``: the SDK's ``ResponseErrorEvent``), numbered after the last event
        sent, which also nests the error as ``error`` so that the ``openai`` SDK raises
        ``APIError`` on it instead of yielding it quietly."""
        numbers = _SEQUENCE_NUMBER.findall(last_sent)
        sequence_number = max(map(int, numbers)) + 1 if numbers else 0
        code = "stream_interrupted"
        payload = dumps({"type": "error", "code": code, "message": message, "param": None,
                         "sequence_number": sequence_number,
                         "error": {"type": "api_error", "code": code, "message": message, "param": None}})
        return b"event: error\ndata: " + payload + b"\n\n"


RESPONSES = ResponsesApi()
