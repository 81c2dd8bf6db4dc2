"""Google Gemini (``POST /v1beta/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse``, also under ``/v1/``): the ``google-genai`` SDK, Gemini CLI.

The model and the stream flag are in the URL, not the body. The caller's key comes as
``x-goog-api-key`` or as ``?key=`` (hashed like every credential, never logged, and left out
of the response cache's key). The conversation is ``contents``: ``{"role": "user" | "model",
"parts": [...]}``. Tool output is in ``functionResponse`` parts of user contents, whose
``response`` is a JSON object; Gemini CLI puts the tool's text in it as ``{"output": "…"}``,
the ``google-genai`` SDK a function's return value as ``{"result": …}``. Each value of it is
a candidate. A string is compressed like any tool output (a JSON text inside it by the JSON
compressor) and put back as a string; an object or array is a structured block (its compact
JSON), compressed to JSON of the same shape (:mod:`headroom.transforms.json_value`) and put
back as that object or array. So ``response`` stays a valid JSON object of the same shape,
with the same keys, whose values keep their types. The call is the ``functionCall`` part of
the model content before it (``name``, ``args``). ``systemInstruction`` and ``tools`` are
never touched.

Usage is ``usageMetadata`` (``promptTokenCount`` includes ``cachedContentTokenCount``, the
cache reads; thinking tokens are billed as output); each streamed chunk carries the figures
so far, so the latest wins. An SSE stream is ``data:`` chunks and no end event: it ends
with the connection, its last chunk carrying a ``finishReason``. Errors are
``{"error": {"code", "message", "status"}}``, the same in a stream. Google sends no
rate-limit headers: a refusal carries ``retry-after`` only.

Everything else under ``/v1beta/`` (``countTokens``, ``models``, files, cached contents …)
passes through untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import ujson

from headroom.formats._gemini_tools import GeminiToolLoop
from headroom.formats.base import Block, Path, Route, ToolLoop, dumps, tools_chars, turn_units
from headroom.pricing import Usage

_CALL_PATH = re.compile(r"^/v1(?:beta)?/models/([A-Za-z0-9._-]+):(generateContent|streamGenerateContent)$")
_OWN_PATH = re.compile(r"^/v1/(?:models|tunedModels)/[^/]*:")  # a Gemini method under /v1/
_USAGE = re.compile(rb'"usageMetadata"\s*:\s*\{')
_STREAM_FAILED = re.compile(rb'"error"\s*:\s*\{')
# google.rpc.Code names by HTTP status, as Google's APIs send them.
_STATUSES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "INVALID_ARGUMENT", 409: "ABORTED", 413: "INVALID_ARGUMENT", 415: "INVALID_ARGUMENT",
    426: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 431: "INVALID_ARGUMENT", 499: "CANCELLED",
    500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}


def contents(body: dict) -> list:
    value = body.get("contents")
    return value if isinstance(value, list) else []


def _parts(content) -> list:
    parts = content.get("parts") if type(content) is dict else None
    return parts if type(parts) is list else []


def iter_outputs(items: list, min_chars: int = 0) -> Iterator[tuple[Path, str, tuple[int, str | None], bool]]:
    """(path, text, (content index, function name), structured) of every value of a
    ``functionResponse.response`` whose text is at least ``min_chars`` long: a string as it
    is, an object or array as its compact JSON (structured); path: (content, part, key index
    in ``response``)."""
    for i, content in enumerate(items):
        if type(content) is not dict or content.get("role") == "model":
            continue
        for j, part in enumerate(_parts(content)):
            reply = part.get("functionResponse") if type(part) is dict else None
            if type(reply) is not dict or type(reply.get("response")) is not dict:
                continue
            for k, value in enumerate(reply["response"].values()):
                if type(value) is str:
                    if len(value) >= min_chars:
                        yield (i, j, k), value, (i, reply.get("name")), False
                elif type(value) is dict or type(value) is list:
                    text = _json_text(value)
                    if text is not None and len(text) >= min_chars:
                        yield (i, j, k), text, (i, reply.get("name")), True


def _json_text(value) -> str | None:
    """An object's or array's JSON as the body is written upstream (compact, unicode and
    slashes as they are); None where it cannot be written (the value is then left alone)."""
    try:
        return ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False)
    except (TypeError, ValueError, OverflowError):
        return None


def _call_input(items: list, before: int, name) -> dict | None:
    """The ``args`` of the newest call to ``name`` in a model content before ``before``."""
    for content in reversed(items[:before]):
        if type(content) is dict and content.get("role") == "model":
            for part in _parts(content):
                call = part.get("functionCall") if type(part) is dict else None
                if type(call) is dict and call.get("name") == name:
                    args = call.get("args")
                    return args if isinstance(args, dict) else None
            return None
    return None


def _side(content: dict) -> str | None:
    return "assistant" if content.get("role") == "model" else "user"


def _no_ids(content: dict) -> tuple[set[str], set[str]]:
    return set(), set()  # a call's response is always in the very next content: units never split them


def usage_of(reported: dict) -> Usage:
    prompt = int(reported.get("promptTokenCount") or 0) + int(reported.get("toolUsePromptTokenCount") or 0)
    cached = int(reported.get("cachedContentTokenCount") or 0)
    output = int(reported.get("candidatesTokenCount") or 0) + int(reported.get("thoughtsTokenCount") or 0)
    return Usage(input_tokens=max(0, prompt - cached), output_tokens=output, cache_read_tokens=cached)


class GeminiApi:
    name = "gemini"
    provider = "gemini"
    upstream_option = "gemini_api_url"
    window_family = "gemini"
    default_window = 1_048_576
    conversation_field = "contents"
    routes: tuple[Route, ...] = ()  # the model is in the path: see is_llm_call
    passthrough_prefixes = (("/v1beta", "/v1beta", "gemini_passthrough"),)
    credential_headers = ("x-goog-api-key",)
    budget_code = "budget_exceeded"
    usage_marker = _USAGE
    tool_loop: ToolLoop | None = GeminiToolLoop()  # the retrieval tool: headroom/formats/_gemini_tools.py

    def claims_path(self, path: str) -> bool:
        return path.startswith("/v1beta/") or _OWN_PATH.match(path) is not None

    def claims_headers(self, headers) -> bool:
        return "x-goog-api-key" in headers

    def is_llm_call(self, method: str, path: str) -> bool:
        return method == "POST" and _CALL_PATH.match(path) is not None

    def refuse_other_method(self, method, path, headers):
        return None

    def query_credentials(self, query) -> list[tuple[str, str]]:
        return [("key", value) for value in (query["key"] if "key" in query else [])]

    def cache_query(self, query, query_string: str) -> str:
        """The query less the API key: the caller is already part of the cache's key, and a
        key must never be hashed into stored data unkeyed."""
        return "&".join(pair for pair in query_string.split("&") if not pair.startswith("key="))

    def model_and_stream(self, body: dict, path: str, query) -> tuple[str | None, bool]:
        found = _CALL_PATH.match(path)
        if found is None:
            return None, False
        return found.group(1), found.group(2) == "streamGenerateContent"

    def logged_messages(self, body: dict):
        return body.get("contents")

    def prepare(self, body: dict) -> bool:
        return False  # every response carries usageMetadata

    def has_block(self, body: dict, min_chars: int) -> bool:
        return any(True for _ in iter_outputs(contents(body), min_chars))

    def blocks(self, body: dict, min_chars: int = 0) -> list[Block]:
        items = contents(body)
        return [Block(path, text, name if isinstance(name, str) else None,
                      _call_input(items, i, name) if isinstance(name, str) else None, structured)
                for path, text, (i, name), structured in iter_outputs(items, min_chars)]

    def user_texts(self, body: dict) -> Iterator[str]:
        for content in reversed(contents(body)):
            if type(content) is dict and content.get("role", "user") == "user":
                yield "\n".join(p["text"] for p in _parts(content) if type(p) is dict and type(p.get("text")) is str)

    def rewrite(self, body: dict, new_texts: dict[Path, str]) -> dict:
        """A new body with the given response values replaced; shares everything else. A
        structured value's new text is JSON, put back as the object or array it holds (the
        same text gives the same value, so the same bytes upstream on every turn)."""
        original = contents(body)
        items = list(original)
        for (i, j, k), text in new_texts.items():
            assert j is not None and k is not None  # a Gemini path names its part and response value
            if items[i] is original[i]:
                items[i] = {**original[i], "parts": list(original[i]["parts"])}
            parts = items[i]["parts"]
            reply = dict(parts[j]["functionResponse"])
            response = dict(reply["response"])
            key = list(response)[k]
            response[key] = text if type(response[key]) is str else json.loads(text)
            reply["response"] = response
            parts[j] = {**parts[j], "functionResponse": reply}
        out = dict(body)
        out["contents"] = items
        return out

    def conversation(self, body: dict) -> list:
        return contents(body)

    def fixed_parts(self, body: dict) -> list:
        return [body.get("systemInstruction"), body.get("tools")]

    def cache_ttls(self, body: dict, paths: list[Path]) -> dict:
        return {}  # implicit caching: no breakpoints

    def fittable(self, body: dict) -> bool:
        return type(body.get("contents")) is list and not body.get("cachedContent")

    def window_chars(self, body: dict) -> int:
        total = 0
        for content in [*contents(body), body.get("systemInstruction")]:
            for part in _parts(content):
                if type(part) is dict:
                    text = part.get("text")
                    if type(text) is str:
                        total += len(text)
                    reply = part.get("functionResponse")
                    response = reply.get("response") if type(reply) is dict else None
                    if type(response) is dict:
                        for value in response.values():
                            if type(value) is str:
                                total += len(value)
                            elif type(value) is dict or type(value) is list:
                                total += len(_json_text(value) or "")
        declarations = [d for tool in body.get("tools") or () if type(tool) is dict
                        for d in tool.get("functionDeclarations") or ()]
        return total + tools_chars(declarations)

    def units(self, messages: list) -> list[list[int]]:
        return turn_units(messages, _side, _no_ids)

    def max_output_tokens(self, body: dict) -> int | None:
        config = body.get("generationConfig")
        value = config.get("maxOutputTokens") if isinstance(config, dict) else None
        return value if isinstance(value, int) and value > 0 else None

    def reported_usage(self, body) -> dict | None:
        if isinstance(body, list) and body:  # streamGenerateContent without alt=sse: an array of chunks
            body = body[-1]
        reported = body.get("usageMetadata") if isinstance(body, dict) else None
        return reported if isinstance(reported, dict) else None

    def usage(self, reported: dict) -> Usage:
        return usage_of(reported)

    def stream_usage(self, event: dict, reported: dict) -> tuple[dict | None, bool]:
        found = event.get("usageMetadata")
        return (found if isinstance(found, dict) else None), False

    def error_body(self, status: int, message: str, code: str | None = None) -> bytes:
        kind = _STATUSES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
        error: dict = {"code": status, "message": message, "status": kind}
        if code:
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": code,
                                 "domain": "headroom"}]
        return dumps({"error": error})

    def stream_error_event(self, message: str, last_sent: bytes = b"") -> bytes:
        return b"data: " + self.error_body(500, message, "stream_interrupted") + b"\r\n\r\n"

    def stream_failed(self, last_events: bytes) -> bool:
        return _STREAM_FAILED.search(last_events) is not None

    def rate_limit_headers(self, kind: str, limit: int, remaining: int, reset_seconds: float) -> dict[str, str]:
        return {}


GEMINI = GeminiApi()
