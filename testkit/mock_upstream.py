"""Local mock of the Anthropic Messages and OpenAI Chat Completions APIs.

This is the *only* fake in the project: every test and benchmark points the
Headroom proxy (or an SDK) at it instead of the real providers, so it mimics
the wire format closely -- JSON bodies, SSE framing, error bodies and the
headers SDKs look at -- while staying cheap enough to benchmark against.

Run standalone::

    python -m testkit.mock_upstream --port 0      # 0 = pick a free port
    # -> "mock upstream listening on http://127.0.0.1:PORT"

or embed with ``make_app()``.

Endpoints
    POST /v1/messages               Anthropic Messages (stream or not)
    POST /v1/messages/count_tokens  {"input_tokens": n}
    POST /v1/chat/completions       OpenAI Chat Completions (stream or not)
    POST /v1/responses              OpenAI Responses (stream or not; function calls, usage)
    GET  /v1/responses/{id}         a minimal stored response (status completed)
    GET  /v1/models[/{id}]          Anthropic shape if the request carries
                                    x-api-key/anthropic-version, else OpenAI
    *    /v1/...                    200 {"method", "path", "query"} echo
    GET  /_mock/requests            recorded requests (last 1000)
    POST /_mock/reset               clear recording and counters
    GET  /_mock/stats               request/stream counters

Control headers (the proxy forwards unknown headers unchanged, so tests steer
the upstream through it)
    x-mock-status: 4xx|5xx       native error body of the provider (+retry-after: 7 on 429)
    x-mock-delay-ms: N           wait before sending response headers
    x-mock-stream-delay-ms: N    wait between stream events
    x-mock-events: N             number of text/tool delta events (default 3)
    x-mock-break-after: N        abort the TCP connection after N stream events
    x-mock-stream-error-after: N after N stream events send the provider's in-stream
                                 error event (overloaded/server_error) and end cleanly
    x-mock-gzip: 1               gzip non-streaming bodies (content-encoding: gzip)
    x-mock-body-bytes: N         instead of the normal answer, a 200 body of exactly N bytes of JSON
                                 (spaces, then ``{"mock":"padded"}``), written 1 MiB at a time and
                                 never held whole (any endpoint)
    x-mock-content-type: T       its content type (default application/json)
    x-mock-declared-length: L    its Content-Length (default N; ``none``: chunked); when L is over N
                                 the connection is cut after the N bytes
    x-mock-body-encoding: E      gzip | deflate | br: the N bytes compressed as they are written;
                                 any other E: sent as they are, labelled E
                                 (chunked), so N = 512 MiB is a 0.5 MiB "bomb" the mock never holds
    x-mock-sse-line-bytes: N     a 200 event stream whose first line is ``data: `` and N bytes of
                                 ``x`` with no line end (1 MiB at a time), then ``\n\n``
    x-mock-set-cookie: C         answer with "set-cookie: C"
    x-mock-ttft-ms: N            model pace for this request (overrides --ttft-ms)
    x-mock-tokens-per-s: R       model pace for this request (overrides --tokens-per-s)
    x-mock-tool-arguments: JSON  the arguments of the tool call the mock makes (a JSON object;
                                 by default the schema's required strings, each "x"), e.g.
                                 ``{"cmd": "cat app.log"}`` for Codex's ``exec_command``
    x-mock-no-tools: 1           answer in text even when the request offers tools (one turn of an
                                 agent such as Claude Code, whose first tool starts a sub-agent)
    x-mock-seek: FACT            answer as a careful model that needs FACT (also ``[seek: FACT]`` in
                                 the newest user text): it calls ``headroom_retrieve`` when a Headroom
                                 marker hid it (Anthropic: also ``headroom mcp``'s tool as Claude Code
                                 names it, ``mcp__headroom__headroom_retrieve``, loading it through
                                 Claude Code's ToolSearch when deferred), and answers ``Found: <line>``
                                 (testkit.retrieving_model; Anthropic: testkit.retrieving_anthropic,
                                 with a thinking block when the request enables thinking; Responses:
                                 testkit.retrieving_responses, with a reasoning item when the request
                                 includes reasoning.encrypted_content)
    x-mock-mixed: NAME           with x-mock-seek, a retrieving answer also calls the client's tool NAME
    x-mock-call-first: NAME      with x-mock-seek, before any tool result: call the client's tool NAME
                                 (arguments from x-mock-tool-arguments)
    x-mock-usage: JSON           a JSON object merged over the answer's ``usage`` (top-level
                                 keys replace), e.g. ``{"input_tokens": 10,
                                 "cache_read_input_tokens": 900}`` or, for OpenAI,
                                 ``{"prompt_tokens": 1000, "prompt_tokens_details":
                                 {"cached_tokens": 800}}`` (Responses: ``input_tokens``,
                                 ``input_tokens_details``, ``output_tokens`` …, in the body and in
                                 ``response.completed``). By default usage is computed
                                 (input ~ body bytes / 4) and reports no cache reads or writes.
                                 Anthropic streams carry it in ``message_start`` (output tokens
                                 in ``message_delta``).

Model pace (``--ttft-ms N --tokens-per-s R``, both 0 by default: answer at once)
    Imitates a real model.  A stream sends its headers and ``message_start`` (OpenAI: the
    role chunk) at once, waits N ms before the first content delta, then paces the deltas
    so the whole answer takes ``output_tokens / R`` seconds.  A non-streaming answer waits
    ``N ms + output_tokens / R`` before its headers.  Adds to x-mock-delay-ms and
    x-mock-stream-delay-ms.

Prefix-stability receipt
    Every Messages / Chat Completions answer (errors excepted) carries
    ``x-mock-tool-results-sha256``: a comma-separated list, in message order, of the
    first 16 hex digits of the SHA-256 of each tool result's content as the mock received
    it (Anthropic ``tool_result`` blocks, OpenAI ``role: tool`` messages, Responses
    ``function_call_output``/``custom_tool_call_output`` items' ``output``; string content is
    hashed as UTF-8, list content as its compact JSON).  A load test compares turn N's
    list with the same positions on turn N+1 without reading the shared recording.

Reply text is deterministic: ``"mock reply: " + first 40 chars of the last
user text`` (padded with "." up to x-mock-events chars), or ``"mock reply:
tool result: <content>"`` after a tool result, so tests can assert on what
the upstream saw.  The hot path does no logging.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import hashlib
import itertools
import json
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from aiohttp import web

from testkit import retrieving_anthropic, retrieving_gemini, retrieving_model, retrieving_responses

try:  # ujson is a Headroom dependency and ~3x faster than json here.
    import ujson

    def _dumps(obj: Any) -> bytes:
        return ujson.dumps(obj, ensure_ascii=False, escape_forward_slashes=False).encode()

    _loads = ujson.loads
except ImportError:  # pragma: no cover - fallback for minimal environments
    import json

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()

    _loads = json.loads

RECORD_LIMIT = 1000
DEFAULT_EVENTS = 3
TOOL_RESULT_CHARS = 500

ANTHROPIC_MODELS = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-3-5-haiku-latest")
OPENAI_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1")

_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_OPENAI_ERRORS = {  # status -> (type, code)
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


class Reply(NamedTuple):
    """What the mock answers: either text or a call to one tool."""

    text: str | None = None
    tool_name: str | None = None
    tool_input: dict[str, Any] | None = None


# --------------------------------------------------------------------------
# Request analysis (pure functions: easy to reason about and to unit-test)
# --------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """Plain text of a message content: a string or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p.get("text") or ""
            for p in content
            if isinstance(p, dict) and p.get("type") in ("text", "input_text")
        )
    return ""


def _last_user_text(messages: list[Any]) -> str:
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return _text_of(msg.get("content"))
    return ""


def _tool_input(schema: Any) -> dict[str, str]:
    """Fill the schema's required string properties with "x" (good enough for SDK parsing)."""
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties") or {}
    return {
        name: "x"
        for name in schema.get("required") or ()
        if isinstance(props.get(name), dict) and props[name].get("type") == "string"
    }


def _text_reply(base: str, events: int) -> Reply:
    # Padding keeps one non-empty delta per requested event, and the
    # non-streaming text identical to the concatenated stream.
    if len(base) < events:
        base += "." * (events - len(base))
    return Reply(text=base)


def anthropic_reply(req: dict[str, Any], events: int) -> Reply:
    """Decide the Anthropic answer: tool-result echo, tool call, or text."""
    messages = req.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    content = last.get("content")
    if last.get("role") == "user" and isinstance(content, list):
        results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if results:
            result = _text_of(results[-1].get("content"))[:TOOL_RESULT_CHARS]
            return _text_reply(f"mock reply: tool result: {result}", events)
    tools = req.get("tools")
    choice = req.get("tool_choice")
    if tools and isinstance(tools[0], dict) and not (isinstance(choice, dict) and choice.get("type") == "none"):
        tool = tools[0]
        return Reply(tool_name=tool.get("name", "tool"), tool_input=_tool_input(tool.get("input_schema")))
    return _text_reply(f"mock reply: {_last_user_text(messages)[:40]}", events)


def openai_reply(req: dict[str, Any], events: int) -> Reply:
    """Decide the OpenAI answer: tool-result echo, tool call, or text."""
    messages = req.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    if last.get("role") == "tool":
        result = _text_of(last.get("content"))[:TOOL_RESULT_CHARS]
        return _text_reply(f"mock reply: tool result: {result}", events)
    tools = req.get("tools")
    if tools and isinstance(tools[0], dict) and req.get("tool_choice") != "none":
        fn = tools[0].get("function") or {}
        return Reply(tool_name=fn.get("name", "tool"), tool_input=_tool_input(fn.get("parameters")))
    return _text_reply(f"mock reply: {_last_user_text(messages)[:40]}", events)


MIXED_HEADER = "x-mock-mixed"  # the careful model also calls this client tool when it retrieves
LOOKING = "Let me look that up. "  # the short text before a retrieval call


class ChatTurn(NamedTuple):
    """A Chat Completions answer of the careful model: its text and its calls (name, arguments)."""

    text: str | None
    calls: list[tuple[str, dict[str, Any]]]


def chat_seen(req: dict[str, Any]) -> retrieving_model.Seen:
    """A Chat Completions request as the careful model reads it: user texts and tool results
    in order, the retrieval calls it already made, whether the tool is declared and callable."""
    seen = retrieving_model.Seen()
    seen.declared = any(isinstance(t, dict) and isinstance(t.get("function"), dict)
                        and t["function"].get("name") == retrieving_model.TOOL_NAME
                        for t in req.get("tools") or ())
    seen.may_call = req.get("tool_choice") != "none"
    for msg in req.get("messages") or ():
        if not isinstance(msg, dict):
            continue
        if msg.get("role") in ("user", "tool", "function"):
            seen.texts.append(_text_of(msg.get("content")))
        elif msg.get("role") == "assistant":
            for call in msg.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and fn.get("name") == retrieving_model.TOOL_NAME:
                    try:
                        args = json.loads(fn.get("arguments") or "{}")
                    except ValueError:
                        continue
                    if isinstance(args, dict):
                        seen.asked.append((args.get("key"), args.get("query")))
    return seen


def chat_seeking(req: dict[str, Any], headers: Any) -> ChatTurn | None:
    """The careful model's Chat Completions answer when the request seeks a fact (else None):
    ``Found: …``, ``Not found: …``, or a short text and a call to ``headroom_retrieve``, after
    a call to the client tool named in ``x-mock-mixed`` when that header is set."""
    seek = retrieving_model.seek_of(headers, _last_user_text(req.get("messages") or []))
    if seek is None:
        return None
    move = retrieving_model.decide(seek, chat_seen(req))
    if isinstance(move, retrieving_model.Answer):
        return ChatTurn(move.text, [])
    calls: list[tuple[str, dict[str, Any]]] = [(retrieving_model.TOOL_NAME, {"key": move.key, "query": move.query})]
    mixed = headers.get(MIXED_HEADER)
    tool = next((t["function"] for t in req.get("tools") or () if isinstance(t, dict)
                 and isinstance(t.get("function"), dict) and t["function"].get("name") == mixed), None)
    if tool is not None:
        calls.append((mixed, _tool_input(tool.get("parameters"))))
    return ChatTurn(LOOKING, calls)


def _responses_messages(req: dict[str, Any]) -> list[Any]:
    """A Responses body's ``input`` as chat-like messages: enough to decide the answer."""
    value = req.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    out: list[Any] = []
    for item in value if isinstance(value, list) else ():
        if not isinstance(item, dict):
            continue
        if item.get("type") in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            out.append({"role": "tool", "content": output if isinstance(output, str) else _text_of(output)})
        elif item.get("role") is not None:
            out.append({"role": item["role"], "content": item.get("content")})
    return out


def responses_reply(req: dict[str, Any], events: int) -> Reply:
    """Decide the Responses answer: tool-output echo, function call (when ``tools`` are given
    and the last input item is a user message), or text."""
    messages = _responses_messages(req)
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return _text_reply(f"mock reply: tool result: {_text_of(last.get('content'))[:TOOL_RESULT_CHARS]}", events)
    tools = [t for t in req.get("tools") or () if isinstance(t, dict) and t.get("type", "function") == "function"]
    if tools and last.get("role") == "user" and req.get("tool_choice") != "none":
        return Reply(tool_name=tools[0].get("name", "tool"), tool_input=_tool_input(tools[0].get("parameters")))
    return _text_reply(f"mock reply: {_last_user_text(messages)[:40]}", events)


def _responses_item_frames(output: list[dict[str, Any]], events: int, calls: int,
                           event: Callable[[dict[str, Any]], bytes], frames: list[bytes]) -> range:
    """Append each output item's stream events to ``frames``, as the API sends them; the range
    of frames that carry deltas (the model pace spreads its time over them). A text before
    calls is one delta; a text answer and a call's arguments take ``events`` deltas each."""
    first = last = len(frames)
    for index, item in enumerate(output):
        item_id = item["id"]
        if item["type"] == "message":
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": "", "annotations": []}
            frames.append(event({"type": "response.output_item.added", "output_index": index,
                                 "item": {**item, "status": "in_progress", "content": []}}))
            frames.append(event({"type": "response.content_part.added", "item_id": item_id, "output_index": index,
                                 "content_index": 0, "part": part}))
            first = len(frames) if first == last else first
            frames += [event({"type": "response.output_text.delta", "item_id": item_id, "output_index": index,
                              "content_index": 0, "delta": p, "logprobs": []})
                       for p in split_pieces(text, 1 if calls else events)]
            last = len(frames)
            frames.append(event({"type": "response.output_text.done", "item_id": item_id, "output_index": index,
                                 "content_index": 0, "text": text, "logprobs": []}))
            frames.append(event({"type": "response.content_part.done", "item_id": item_id, "output_index": index,
                                 "content_index": 0, "part": {**part, "text": text}}))
        elif item["type"] == "function_call":
            frames.append(event({"type": "response.output_item.added", "output_index": index,
                                 "item": {**item, "status": "in_progress", "arguments": ""}}))
            first = len(frames) if first == last else first
            frames += [event({"type": "response.function_call_arguments.delta", "item_id": item_id,
                              "output_index": index, "delta": p})
                       for p in split_pieces(item["arguments"], events)]
            last = len(frames)
            frames.append(event({"type": "response.function_call_arguments.done", "item_id": item_id,
                                 "output_index": index, "arguments": item["arguments"]}))
        else:  # reasoning: its summary, streamed
            summary = item["summary"][0]["text"]
            part = {"type": "summary_text", "text": ""}
            frames.append(event({"type": "response.output_item.added", "output_index": index,
                                 "item": {"id": item_id, "type": "reasoning", "summary": []}}))
            frames.append(event({"type": "response.reasoning_summary_part.added", "item_id": item_id,
                                 "output_index": index, "summary_index": 0, "part": part}))
            frames.append(event({"type": "response.reasoning_summary_text.delta", "item_id": item_id,
                                 "output_index": index, "summary_index": 0, "delta": summary}))
            frames.append(event({"type": "response.reasoning_summary_text.done", "item_id": item_id,
                                 "output_index": index, "summary_index": 0, "text": summary}))
            frames.append(event({"type": "response.reasoning_summary_part.done", "item_id": item_id,
                                 "output_index": index, "summary_index": 0, "part": {**part, "text": summary}}))
        frames.append(event({"type": "response.output_item.done", "output_index": index, "item": item}))
    return range(first, last)


def split_pieces(s: str, n: int) -> list[str]:
    """Split s into at most n non-empty, contiguous pieces."""
    n = max(1, min(n, len(s)))
    return [s[i * len(s) // n : (i + 1) * len(s) // n] for i in range(n)]


def _usage_header(request: web.Request) -> dict[str, Any]:
    """The ``x-mock-usage`` JSON object (``{}`` when absent or not a JSON object)."""
    raw = request.headers.get("x-mock-usage")
    if not raw:
        return {}
    try:
        value = _loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _steered(reply: Reply, request: web.Request) -> Reply:
    """The reply with the tool call's arguments from ``x-mock-tool-arguments`` when given."""
    raw = request.headers.get("x-mock-tool-arguments")
    if reply.tool_name is None or not raw:
        return reply
    try:
        value = _loads(raw)
    except ValueError:
        return reply
    return reply._replace(tool_input=value) if isinstance(value, dict) else reply


def _sse_asked(request: web.Request) -> bool:
    """Gemini's ``streamGenerateContent`` streams SSE only with ``alt=sse``; otherwise (``alt``
    absent or ``json``) it answers one JSON array of the chunks."""
    return request.query.getall("alt", []) == ["sse"]


def _int_header(request: web.Request, name: str, default: int = 0) -> int:
    value = request.headers.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return default


def _float_header(request: web.Request, name: str, default: float) -> float:
    value = request.headers.get(name)
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


class Pace(NamedTuple):
    """Model-like timing: time to first token and output tokens per second (0: no wait)."""

    ttft_ms: float = 0.0
    tokens_per_s: float = 0.0

    def generation_s(self, output_tokens: int) -> float:
        return output_tokens / self.tokens_per_s if self.tokens_per_s > 0 else 0.0

    def total_s(self, output_tokens: int) -> float:
        return self.ttft_ms / 1000 + self.generation_s(output_tokens)


def _content_digest(content: Any) -> str:
    if isinstance(content, str):
        data = content.encode("utf-8", "surrogatepass")
    else:
        data = _dumps(content)
    return hashlib.sha256(data).hexdigest()[:16]


def tool_result_digests(req: dict[str, Any], anthropic: bool, responses_api: bool = False) -> str:
    """The ``x-mock-tool-results-sha256`` value: one digest per tool result, in message order."""
    out: list[str] = []
    if responses_api:
        items = req.get("input") if isinstance(req.get("input"), list) else ()
        return ",".join(_content_digest(item.get("output", "")) for item in items if isinstance(item, dict)
                        and item.get("type") in ("function_call_output", "custom_tool_call_output"))
    for msg in req.get("messages") or ():
        if not isinstance(msg, dict):
            continue
        if anthropic:
            content = msg.get("content")
            if isinstance(content, list):
                out += [_content_digest(b.get("content", "")) for b in content
                        if isinstance(b, dict) and b.get("type") == "tool_result"]
        elif msg.get("role") == "tool":
            out.append(_content_digest(msg.get("content", "")))
    return ",".join(out)


# --------------------------------------------------------------------------
# SSE framing
# --------------------------------------------------------------------------


def _anthropic_event(obj: dict[str, Any]) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + _dumps(obj) + b"\n\n"


def _openai_event(obj: dict[str, Any]) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


_OPENAI_DONE = b"data: [DONE]\n\n"


def _stream_error(anthropic: bool, responses_api: bool = False, sequence_number: int = 0) -> bytes:
    """The error event a provider sends when it fails after the 200 went out."""
    if responses_api:
        return b"event: error\ndata: " + _dumps({"type": "error", "code": "server_error",
                                                 "message": "mock mid-stream error", "param": None,
                                                 "sequence_number": sequence_number}) + b"\n\n"
    if anthropic:
        return _anthropic_event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    return _openai_event({"error": {"message": "mock mid-stream error", "type": "server_error",
                                    "param": None, "code": None}})


# --------------------------------------------------------------------------
# Oversized answers (x-mock-body-bytes, x-mock-sse-line-bytes)
# --------------------------------------------------------------------------

_PIECE = 1 << 20
_SPACES = b" " * _PIECE
_PADDED_TAIL = b'{"mock":"padded"}'


def _padding(size: int):
    """``size`` bytes of valid JSON (whitespace, then a small object), 1 MiB at a time."""
    spaces = max(0, size - len(_PADDED_TAIL))
    while spaces > 0:
        piece = min(spaces, _PIECE)
        spaces -= piece
        yield _SPACES if piece == _PIECE else _SPACES[:piece]
    yield _PADDED_TAIL[max(0, len(_PADDED_TAIL) - size):]


class _Compressor:
    """A streaming encoder for one ``content-encoding`` (only what the mock writes is held)."""

    def __init__(self, encoding: str) -> None:
        if encoding == "br":
            import brotli  # aiohttp decodes br with it; the mock needs it only for this header

            self._obj = brotli.Compressor(quality=5)
            self.compress, self.flush = self._obj.process, self._obj.finish
        elif encoding not in ("gzip", "deflate"):  # a label only: the bytes go as they are
            self.compress, self.flush = bytes, bytes
        else:  # gzip, or deflate (RFC 9110: the zlib format)
            import zlib

            self._obj = zlib.compressobj(9, zlib.DEFLATED, 31 if encoding == "gzip" else 15)
            self.compress, self.flush = self._obj.compress, self._obj.flush


async def _oversized_body(request: web.Request) -> web.StreamResponse:
    size = _int_header(request, "x-mock-body-bytes")
    encoding = request.headers.get("x-mock-body-encoding", "")
    declared = request.headers.get("x-mock-declared-length", "")
    resp = web.StreamResponse(headers={"content-type": request.headers.get("x-mock-content-type",
                                                                           "application/json")})
    compressor = _Compressor(encoding) if encoding else None
    if compressor is not None:
        resp.headers["content-encoding"] = encoding
        resp.enable_chunked_encoding()
    elif declared == "none":
        resp.enable_chunked_encoding()
    else:
        resp.content_length = int(declared) if declared.isdigit() else size
    try:
        await resp.prepare(request)
        for piece in _padding(size):
            data = compressor.compress(piece) if compressor is not None else piece
            if data:
                await resp.write(data)
        if compressor is not None:
            await resp.write(compressor.flush())
        if resp.content_length is not None and resp.content_length > size and request.transport is not None:
            stall = _int_header(request, "x-mock-stall-ms")
            if stall > 0:
                await asyncio.sleep(stall / 1000)  # the rest of the declared body is late
            request.transport.abort()  # the rest of the declared body never comes
    except ConnectionError:
        pass  # the proxy refused the body and hung up: what the tests want
    return resp


async def _endless_sse_line(request: web.Request) -> web.StreamResponse:
    size = _int_header(request, "x-mock-sse-line-bytes")
    resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
    xs = b"x" * _PIECE
    try:
        await resp.prepare(request)
        await resp.write(b"data: ")
        while size > 0:
            piece = min(size, _PIECE)
            size -= piece
            await resp.write(xs if piece == _PIECE else xs[:piece])
        await resp.write(b"\n\n")
    except ConnectionError:
        pass
    return resp


# --------------------------------------------------------------------------
# The mock
# --------------------------------------------------------------------------


class MockUpstream:
    """Request handlers plus the recording/counters they share."""

    def __init__(self, record_limit: int = RECORD_LIMIT, pace: Pace | None = None) -> None:
        self.pace = pace or Pace()
        # Raw tuples are stored; JSON conversion happens only on /_mock/requests.
        # (method, path, query, headers, body, the request target exactly as it arrived)
        self.recorded: deque[tuple[str, str, str, Any, bytes, str]] = deque(maxlen=record_limit)
        self._ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.recorded.clear()
        self.requests = 0
        self.streams_started = 0
        self.streams_completed = 0
        self.streams_cancelled = 0
        self.streams_broken = 0

    # -- shared prologue -----------------------------------------------------

    async def _begin(self, request: web.Request, anthropic: bool) -> tuple[bytes, web.StreamResponse | None]:
        """Record the request and apply delay/status injection.

        Returns the body and, if the request asked for an error, the error
        response to send instead of the normal one.
        """
        body = await request.read()
        self.requests += 1
        self.recorded.append(
            (request.method, request.path, request.rel_url.raw_query_string, request.headers, body,
             request.raw_path)
        )
        delay = _int_header(request, "x-mock-delay-ms")
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        status = _int_header(request, "x-mock-status")
        if status >= 400:
            return body, self._error(request, anthropic, status, f"mock injected error {status}")
        if "x-mock-body-bytes" in request.headers:
            return body, await _oversized_body(request)
        if "x-mock-sse-line-bytes" in request.headers:
            return body, await _endless_sse_line(request)
        return body, None

    def _pace(self, request: web.Request) -> Pace:
        return Pace(_float_header(request, "x-mock-ttft-ms", self.pace.ttft_ms),
                    _float_header(request, "x-mock-tokens-per-s", self.pace.tokens_per_s))

    def _headers(self, request: web.Request, anthropic: bool) -> dict[str, str]:
        n = next(self._ids)
        if anthropic:
            headers = {
                "request-id": f"req_mock{n:016d}",
                "anthropic-ratelimit-requests-limit": "1000",
                "anthropic-ratelimit-requests-remaining": "999",
            }
        else:
            headers = {
                "x-request-id": f"req_mock{n:016d}",
                "x-ratelimit-limit-requests": "1000",
                "x-ratelimit-remaining-requests": "999",
                "openai-processing-ms": "1",
            }
        headers["x-mock-seen-query"] = request.rel_url.raw_query_string
        cookie = request.headers.get("x-mock-set-cookie")
        if cookie:
            headers["set-cookie"] = cookie
        return headers

    def _json(self, request: web.Request, anthropic: bool, obj: Any, status: int = 200,
              extra: dict[str, str] | None = None) -> web.Response:
        headers = self._headers(request, anthropic)
        if extra:
            headers.update(extra)
        body = _dumps(obj)
        if request.headers.get("x-mock-gzip") == "1":
            body = gzip.compress(body, compresslevel=1)
            headers["content-encoding"] = "gzip"
        return web.Response(body=body, status=status, headers=headers, content_type="application/json")

    def _error(self, request: web.Request, anthropic: bool, status: int, message: str) -> web.Response:
        extra = {"retry-after": "7"} if status == 429 else None
        if anthropic:
            etype = _ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
            obj: dict[str, Any] = {"type": "error", "error": {"type": etype, "message": message}}
        else:
            fallback = ("server_error" if status >= 500 else "invalid_request_error", None)
            etype, code = _OPENAI_ERRORS.get(status, fallback)
            obj = {"error": {"message": message, "type": etype, "param": None, "code": code}}
        return self._json(request, anthropic, obj, status=status, extra=extra)

    def _parse(self, request: web.Request, anthropic: bool, body: bytes) -> dict[str, Any] | web.Response:
        try:
            req = _loads(body)
        except ValueError:
            return self._error(request, anthropic, 400, "request body is not valid JSON")
        if not isinstance(req, dict):
            return self._error(request, anthropic, 400, "request body must be a JSON object")
        return req

    async def _llm_call(self, request: web.Request, anthropic: bool,
                        decide: Callable[[dict[str, Any], int], Reply]) -> web.Response | tuple:
        """What every LLM endpoint does first: record the request and apply the injections
        (:meth:`_begin`), parse the body, and decide the answer (``decide``, then steered by
        ``x-mock-tool-arguments``). Returns ``(body, request JSON, events, reply)``, or the
        error response to send instead."""
        body, err = await self._begin(request, anthropic)
        if err is not None:
            return err
        req = self._parse(request, anthropic, body)
        if isinstance(req, web.Response):
            return req
        events = max(1, _int_header(request, "x-mock-events", DEFAULT_EVENTS))
        if request.headers.get("x-mock-no-tools") == "1":
            req = {**req, "tools": []}
        return body, req, events, _steered(decide(req, events), request)

    # -- streaming -----------------------------------------------------------

    async def _stream(self, request: web.Request, anthropic: bool, frames: list[bytes],
                      deltas: range = range(0), output_tokens: int = 0,
                      extra: dict[str, str] | None = None, responses_api: bool = False) -> web.StreamResponse:
        """Write SSE frames one by one, honouring the delay/break controls.

        A client that goes away shows up as ConnectionError on write (or as
        cancellation if the server cancels handlers); both count as cancelled.
        The response object is returned even then: aiohttp's final
        write_eof fails with ConnectionError, which it treats as a quiet
        premature disconnect instead of logging a handler error.
        """
        headers = self._headers(request, anthropic)
        headers["cache-control"] = "no-cache"
        if extra:
            headers.update(extra)
        resp = web.StreamResponse(headers=headers)
        resp.content_type = "text/event-stream"
        resp.charset = "utf-8"
        gap = _int_header(request, "x-mock-stream-delay-ms") / 1000
        break_after = _int_header(request, "x-mock-break-after", -1)
        error_after = _int_header(request, "x-mock-stream-error-after", -1)
        if 0 <= error_after < len(frames):
            frames = frames[:error_after] + [_stream_error(anthropic, responses_api, error_after)]
        pace = self._pace(request)
        waits = [0.0] * len(frames)  # model pace: seconds to wait before frame i
        if deltas and (pace.ttft_ms or pace.tokens_per_s):
            per_delta = pace.generation_s(output_tokens) / len(deltas)
            for i in deltas:
                if i < len(waits):
                    waits[i] = per_delta
            if deltas.start < len(waits):
                waits[deltas.start] = pace.ttft_ms / 1000
        self.streams_started += 1
        try:
            await resp.prepare(request)
            for i, frame in enumerate(frames):
                if i == break_after:
                    self.streams_broken += 1
                    if request.transport is not None:
                        request.transport.abort()  # RST, no terminating chunk
                    return resp
                wait = waits[i] + (gap if i else 0.0)
                if wait > 0:
                    await asyncio.sleep(wait)
                await resp.write(frame)
        except ConnectionError:
            self.streams_cancelled += 1
            return resp
        except asyncio.CancelledError:
            self.streams_cancelled += 1
            raise
        self.streams_completed += 1
        return resp

    # -- Anthropic -----------------------------------------------------------

    async def messages(self, request: web.Request) -> web.StreamResponse:
        call = await self._llm_call(request, True, anthropic_reply)
        if isinstance(call, web.StreamResponse):
            return call
        body, req, events, reply = call
        fact = retrieving_anthropic.seek(req, request.headers)
        if fact is not None:
            return await self._seeking(request, req, body, fact)
        model = req.get("model", "claude-mock")
        msg_id = f"msg_mock{next(self._ids):016d}"
        input_tokens = max(1, len(body) // 4)
        if reply.text is not None:
            block: dict[str, Any] = {"type": "text", "text": reply.text}
            output_tokens, stop = max(1, len(reply.text) // 4), "end_turn"
        else:
            tool_id = f"toolu_mock{next(self._ids):016d}"
            block = {"type": "tool_use", "id": tool_id, "name": reply.tool_name, "input": reply.tool_input}
            output_tokens, stop = 16, "tool_use"
        usage = {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        override = _usage_header(request)
        if "output_tokens" in override:
            output_tokens = int(override["output_tokens"])
        usage.update({k: v for k, v in override.items() if k != "output_tokens"})
        receipt = {"x-mock-tool-results-sha256": tool_result_digests(req, True)}
        if not req.get("stream"):
            wait = self._pace(request).total_s(output_tokens)
            if wait > 0:
                await asyncio.sleep(wait)
            return self._json(request, True, {
                "id": msg_id, "type": "message", "role": "assistant", "model": model,
                "content": [block], "stop_reason": stop, "stop_sequence": None,
                "usage": {**usage, "output_tokens": output_tokens},
            }, extra=receipt)

        if reply.text is not None:
            start_block: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in split_pieces(reply.text, events)]
        else:
            start_block = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p}
                      for p in split_pieces(_dumps(reply.tool_input).decode(), events)]
        frames = [
            _anthropic_event({"type": "message_start", "message": {
                "id": msg_id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {**usage, "output_tokens": 1},
            }}),
            _anthropic_event({"type": "content_block_start", "index": 0, "content_block": start_block}),
            _anthropic_event({"type": "ping"}),
            *(_anthropic_event({"type": "content_block_delta", "index": 0, "delta": d}) for d in deltas),
            _anthropic_event({"type": "content_block_stop", "index": 0}),
            _anthropic_event({"type": "message_delta",
                              "delta": {"stop_reason": stop, "stop_sequence": None},
                              "usage": {"output_tokens": output_tokens}}),
            _anthropic_event({"type": "message_stop"}),
        ]
        return await self._stream(request, True, frames, range(3, 3 + len(deltas)), output_tokens, receipt)

    async def _seeking(self, request: web.Request, req: dict[str, Any], body: bytes, fact: str) -> web.StreamResponse:
        """The careful model's answer (:mod:`testkit.retrieving_anthropic`), JSON or stream."""
        refusal = retrieving_anthropic.thinking_refusal(req)
        if refusal is not None:
            return self._error(request, True, 400, refusal)
        blocks = retrieving_anthropic.reply_blocks(req, fact, request.headers,
                                                   lambda: f"toolu_mock{next(self._ids):016d}")
        calls = any(block["type"] == "tool_use" for block in blocks)
        usage = {"input_tokens": max(1, len(body) // 4), "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0, "output_tokens": retrieving_anthropic.output_tokens(blocks)}
        usage.update(_usage_header(request))
        message = {"id": f"msg_mock{next(self._ids):016d}", "type": "message", "role": "assistant",
                   "model": req.get("model", "claude-mock"), "content": blocks,
                   "stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None, "usage": usage}
        receipt = {"x-mock-tool-results-sha256": tool_result_digests(req, True)}
        if not req.get("stream"):
            return self._json(request, True, message, extra=receipt)
        frames = retrieving_anthropic.stream_frames(message)
        return await self._stream(request, True, frames, extra=receipt)

    async def count_tokens(self, request: web.Request) -> web.Response:
        body, err = await self._begin(request, True)
        if err is not None:
            return err
        return self._json(request, True, {"input_tokens": max(1, len(body) // 4)})

    # -- OpenAI --------------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        call = await self._llm_call(request, False, openai_reply)
        if isinstance(call, web.StreamResponse):
            return call
        body, req, events, reply = call
        answer = chat_seeking(req, request.headers)
        if answer is None:
            answer = ChatTurn(reply.text, [] if reply.text is not None else [(reply.tool_name, reply.tool_input)])
        model = req.get("model", "gpt-mock")
        n = next(self._ids)
        cmpl_id = f"chatcmpl-mock{n:016d}"
        created = int(time.time())
        prompt_tokens = max(1, len(body) // 4)
        completion_tokens = max(1, len(answer.text or "") // 4) if not answer.calls else 16 * len(answer.calls)
        finish = "tool_calls" if answer.calls else "stop"
        calls = [{"id": f"call_mock{n:016d}" + (f"_{i}" if i else ""), "type": "function",
                  "function": {"name": name, "arguments": _dumps(arguments).decode()}}
                 for i, (name, arguments) in enumerate(answer.calls)]
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        usage.update(_usage_header(request))
        receipt = {"x-mock-tool-results-sha256": tool_result_digests(req, False)}
        if not req.get("stream"):
            wait = self._pace(request).total_s(completion_tokens)
            if wait > 0:
                await asyncio.sleep(wait)
            message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
            if calls:
                message["tool_calls"] = calls
            return self._json(request, False, {
                "id": cmpl_id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage, "system_fingerprint": "fp_mock",
            }, extra=receipt)

        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            obj: dict[str, Any] = {
                "id": cmpl_id, "object": "chat.completion.chunk", "created": created,
                "model": model, "system_fingerprint": "fp_mock",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                obj["usage"] = None
            return _openai_event(obj)

        frames = []
        if answer.text is not None:
            frames.append(chunk({"role": "assistant", "content": "", "refusal": None}))
            # a text before calls is one short delta; a text answer takes x-mock-events deltas
            frames += [chunk({"content": p}) for p in split_pieces(answer.text, 1 if calls else events)]
        for i, tool_call in enumerate(calls):
            opening = {"index": i, **tool_call, "function": {**tool_call["function"], "arguments": ""}}
            if answer.text is None and i == 0:
                frames.append(chunk({"role": "assistant", "content": None, "tool_calls": [opening]}))
            else:
                frames.append(chunk({"tool_calls": [opening]}))
            frames += [chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]})
                       for p in split_pieces(tool_call["function"]["arguments"], events)]
        deltas = range(1, len(frames))
        frames.append(chunk({}, finish))
        if include_usage:
            frames.append(_openai_event({
                "id": cmpl_id, "object": "chat.completion.chunk", "created": created,
                "model": model, "system_fingerprint": "fp_mock", "choices": [], "usage": usage,
            }))
        frames.append(_OPENAI_DONE)
        return await self._stream(request, False, frames, deltas, completion_tokens, receipt)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        call = await self._llm_call(request, False, responses_reply)
        if isinstance(call, web.StreamResponse):
            return call
        body, req, events, reply = call
        n = next(self._ids)
        resp_id = f"resp_mock{n:016d}"
        input_tokens = max(1, len(body) // 4)
        reasoning_tokens = 0
        seeking = retrieving_responses.seeking(req, request.headers)
        if seeking is not None:
            refusal = retrieving_responses.missing_reasoning(req)
            if refusal is not None:
                return self._error(request, False, 400, refusal)
            output, reasoning_tokens = retrieving_responses.output_items(seeking, n, resp_id)
            output_tokens = max(1, len(seeking.text or "") // 4) + 16 * len(seeking.calls) + reasoning_tokens
        elif reply.text is not None:
            output_tokens = max(1, len(reply.text) // 4)
            output = [{"id": f"msg_mock{n:016d}", "type": "message", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": reply.text, "annotations": []}]}]
        else:
            output_tokens = 16
            output = [{"id": f"fc_mock{n:016d}", "type": "function_call", "status": "completed",
                       "call_id": f"call_mock{n:016d}", "name": reply.tool_name,
                       "arguments": _dumps(reply.tool_input).decode()}]
        usage: dict[str, Any] = {
            "input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": input_tokens + output_tokens,
        }
        usage.update(_usage_header(request))
        receipt = {"x-mock-tool-results-sha256": tool_result_digests(req, False, responses_api=True)}

        def response_obj(status: str, output: list[Any], usage_obj: Any) -> dict[str, Any]:
            return {
                "id": resp_id, "object": "response", "created_at": int(time.time()), "status": status,
                "error": None, "incomplete_details": None, "instructions": req.get("instructions"),
                "max_output_tokens": req.get("max_output_tokens"), "model": req.get("model", "gpt-mock"),
                "output": output, "parallel_tool_calls": True,
                "previous_response_id": req.get("previous_response_id"), "reasoning": {"effort": None},
                "store": req.get("store", True), "temperature": 1.0, "text": {"format": {"type": "text"}},
                "tool_choice": req.get("tool_choice", "auto"), "tools": req.get("tools") or [], "top_p": 1.0,
                "truncation": "disabled", "usage": usage_obj, "user": None, "metadata": {},
            }

        if not req.get("stream"):
            wait = self._pace(request).total_s(output_tokens)
            if wait > 0:
                await asyncio.sleep(wait)
            return self._json(request, False, response_obj("completed", output, usage), extra=receipt)

        seq = itertools.count()

        def event(obj: dict[str, Any]) -> bytes:
            obj["sequence_number"] = next(seq)
            return b"event: " + obj["type"].encode() + b"\ndata: " + _dumps(obj) + b"\n\n"

        frames = [event({"type": "response.created", "response": response_obj("in_progress", [], None)}),
                  event({"type": "response.in_progress", "response": response_obj("in_progress", [], None)})]
        calls = sum(1 for item in output if item["type"] == "function_call")
        deltas = _responses_item_frames(output, events, calls, event, frames)
        frames.append(event({"type": "response.completed", "response": response_obj("completed", output, usage)}))
        return await self._stream(request, False, frames, deltas, output_tokens, receipt, responses_api=True)

    async def get_response(self, request: web.Request) -> web.Response:
        _, err = await self._begin(request, False)
        if err is not None:
            return err
        return self._json(request, False, {
            "id": request.match_info["response_id"], "object": "response", "created_at": int(time.time()),
            "status": "completed", "error": None, "model": "gpt-mock", "output": [], "usage": None,
        })

    # -- models and catch-all ------------------------------------------------

    @staticmethod
    def _is_anthropic(request: web.Request) -> bool:
        return "x-api-key" in request.headers or "anthropic-version" in request.headers

    @staticmethod
    def _model_obj(model_id: str, anthropic: bool) -> dict[str, Any]:
        if anthropic:
            return {"type": "model", "id": model_id, "display_name": model_id,
                    "created_at": "2025-01-01T00:00:00Z"}
        return {"id": model_id, "object": "model", "created": 1735689600, "owned_by": "system"}

    async def list_models(self, request: web.Request) -> web.Response:
        anthropic = self._is_anthropic(request)
        _, err = await self._begin(request, anthropic)
        if err is not None:
            return err
        if anthropic:
            data = [self._model_obj(m, True) for m in ANTHROPIC_MODELS]
            obj: dict[str, Any] = {"data": data, "has_more": False,
                                   "first_id": data[0]["id"], "last_id": data[-1]["id"]}
        else:
            obj = {"object": "list", "data": [self._model_obj(m, False) for m in OPENAI_MODELS]}
        return self._json(request, anthropic, obj)

    async def get_model(self, request: web.Request) -> web.Response:
        anthropic = self._is_anthropic(request)
        _, err = await self._begin(request, anthropic)
        if err is not None:
            return err
        return self._json(request, anthropic, self._model_obj(request.match_info["model_id"], anthropic))

    async def echo(self, request: web.Request) -> web.Response:
        anthropic = self._is_anthropic(request)
        _, err = await self._begin(request, anthropic)
        if err is not None:
            return err
        return self._json(request, anthropic, {
            "method": request.method, "path": request.path,
            "query": request.rel_url.raw_query_string,
        })

    # -- Google Gemini ---------------------------------------------------------

    async def gemini(self, request: web.Request) -> web.StreamResponse:
        """``generateContent`` / ``streamGenerateContent`` (``?alt=sse``: SSE, else a JSON array
        of the chunks): a function call to the first declared function when the newest content
        is a user question and tools are declared, else a text that names the digest of the
        function responses it got.

        Seeking a fact (``x-mock-seek: FACT`` or ``[seek: FACT]`` in the newest user text), it
        answers as the careful model (:mod:`testkit.retrieving_gemini`): a ``headroom_retrieve``
        call after a short text (in a stream, the text is a chunk of its own), or a text
        answer; a retrieval call sent back without its ``thoughtSignature`` is refused (400)."""
        body, err = await self._begin(request, False)
        if err is not None:
            return err
        try:
            req = json.loads(body)
        except ValueError:
            req = None
        if not isinstance(req, dict):
            error = {"code": 400, "message": "Invalid JSON payload received.", "status": "INVALID_ARGUMENT"}
            return web.Response(status=400, body=_dumps({"error": error}), content_type="application/json")
        contents = req.get("contents") or []
        model, action = request.match_info["call"].rsplit(":", 1)
        prompt = max(1, len(body) // 4)
        refusal = retrieving_gemini.signature_refusal(req)
        if refusal is not None:
            error = {"code": 400, "message": refusal, "status": "INVALID_ARGUMENT"}
            return web.Response(status=400, body=_dumps({"error": error}), content_type="application/json")
        fact = retrieving_gemini.seek(req, request.headers)
        if fact is not None:
            chunks = retrieving_gemini.reply_chunks(req, fact, request.headers,
                                                    max(1, _int_header(request, "x-mock-events", DEFAULT_EVENTS)))
            return await self._gemini_answer(request, action, chunks, prompt, model, thoughts=5)
        last = contents[-1] if contents and isinstance(contents[-1], dict) else {}
        answered = [p["functionResponse"] for c in contents if isinstance(c, dict)
                    for p in c.get("parts") or () if isinstance(p, dict) and "functionResponse" in p]
        declared = [d for t in req.get("tools") or () for d in t.get("functionDeclarations") or ()]
        asks = any("text" in p for p in last.get("parts") or ())
        if declared and asks and not any("functionResponse" in p for p in last.get("parts") or ()):
            parts: list[dict] = [{"functionCall": {"name": declared[0]["name"], "args": {"limit": 200}}}]
        else:
            digest = hashlib.sha256(_dumps(answered)).hexdigest()[:12]
            parts = [{"text": f"Gemini mock reply ({len(answered)} function responses, {digest})."}]
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": 7, "totalTokenCount": prompt + 7,
                 "cachedContentTokenCount": prompt // 2}
        whole = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                 "usageMetadata": usage, "modelVersion": model, "responseId": f"gm_{next(self._ids)}"}
        if action != "streamGenerateContent":
            return web.Response(body=_dumps(whole), content_type="application/json")
        first = {**whole, "candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "index": 0}],
                 "usageMetadata": {"promptTokenCount": prompt, "totalTokenCount": prompt}}
        if not _sse_asked(request):
            return web.Response(body=_dumps([first, whole]), content_type="application/json")
        frames = [b"data: " + _dumps(chunk) + b"\r\n\r\n" for chunk in (first, whole)]
        return await self._stream(request, False, frames)

    async def _gemini_answer(self, request: web.Request, action: str, chunks: list[list[dict]], prompt: int,
                             model: str, thoughts: int = 0) -> web.StreamResponse:
        """The careful model's answer whose parts come in ``chunks`` (stream: one chunk each,
        the last with ``finishReason`` and the full usage; JSON: their parts joined)."""
        output = sum(max(1, len(_dumps(p)) // 4) for chunk in chunks for p in chunk)
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": output,
                 "totalTokenCount": prompt + output + thoughts, "cachedContentTokenCount": prompt // 2,
                 "thoughtsTokenCount": thoughts}
        response_id = f"gm_{next(self._ids)}"
        if action != "streamGenerateContent":
            parts = [p for chunk in chunks for p in chunk]
            whole = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP",
                                     "index": 0}],
                     "usageMetadata": usage, "modelVersion": model, "responseId": response_id}
            return web.Response(body=_dumps(whole), content_type="application/json")
        streamed = []
        for i, parts in enumerate(chunks):
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
            chunk_usage: dict[str, Any] = {"promptTokenCount": prompt, "totalTokenCount": prompt}
            if i == len(chunks) - 1:
                candidate["finishReason"] = "STOP"
                chunk_usage = usage
            streamed.append({"candidates": [candidate], "usageMetadata": chunk_usage, "modelVersion": model,
                             "responseId": response_id})
        if not _sse_asked(request):
            return web.Response(body=_dumps(streamed), content_type="application/json")
        frames = [b"data: " + _dumps(chunk) + b"\r\n\r\n" for chunk in streamed]
        return await self._stream(request, False, frames, range(1, len(frames)), output)

    # -- /_mock control plane --------------------------------------------------

    async def mock_requests(self, request: web.Request) -> web.Response:
        """Recorded requests; ``body`` is latin-1 (``.encode('latin-1')`` gives the exact bytes)."""
        out = [
            {
                "method": method, "path": path, "query": query, "target": target,
                "headers": {k.lower(): v for k, v in headers.items()},
                "body": body.decode("latin-1"),
                "body_b64": base64.b64encode(body).decode(),
            }
            for method, path, query, headers, body, target in self.recorded
        ]
        return web.Response(body=_dumps(out), content_type="application/json")

    async def mock_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(body=b'{"ok":true}', content_type="application/json")

    async def mock_stats(self, request: web.Request) -> web.Response:
        return web.Response(body=_dumps(self.stats()), content_type="application/json")

    def stats(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "streams_cancelled": self.streams_cancelled,
            "streams_broken": self.streams_broken,
        }


MOCK_KEY = web.AppKey("mock_upstream", MockUpstream)


def make_app(record_limit: int = RECORD_LIMIT, pace: Pace | None = None) -> web.Application:
    """Build the mock app; the MockUpstream instance is at ``app[MOCK_KEY]``."""
    mock = MockUpstream(record_limit, pace)
    app = web.Application(client_max_size=256 * 1024 * 1024)  # big agent contexts are the point
    app[MOCK_KEY] = mock
    r = app.router
    r.add_post("/v1/messages", mock.messages)
    r.add_post("/v1/messages/count_tokens", mock.count_tokens)
    r.add_post("/v1/chat/completions", mock.chat_completions)
    r.add_post("/v1/responses", mock.responses)
    r.add_get("/v1/responses/{response_id}", mock.get_response)
    r.add_get("/v1/models", mock.list_models)
    r.add_get("/v1/models/{model_id}", mock.get_model)
    for version in ("v1beta", "v1"):  # a static prefix each: aiohttp indexes routes by it
        r.add_post(f"/{version}/models/{{call:[^/]+:(?:generateContent|streamGenerateContent)}}", mock.gemini)
    r.add_route("*", "/v1/{tail:.*}", mock.echo)
    r.add_route("*", "/v1beta/{tail:.*}", mock.echo)
    r.add_get("/_mock/requests", mock.mock_requests)
    r.add_post("/_mock/reset", mock.mock_reset)
    r.add_get("/_mock/stats", mock.mock_stats)
    return app


async def serve(host: str, port: int, banner: str = "mock upstream", pace: Pace | None = None) -> None:
    """Serve ``make_app()`` until SIGINT/SIGTERM; prints the bound URL once ready."""
    await serve_app(make_app(pace=pace), host, port, banner)


async def serve_app(app: web.Application, host: str, port: int, banner: str) -> None:
    """Shared by the bare pass-through: bind, announce the real port, wait for a signal."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    real_port = runner.addresses[0][1]
    print(f"{banner} listening on http://{host}:{real_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run(coro_factory: Any, use_uvloop: bool) -> None:
    """Run with uvloop when available: the mock must not be the bottleneck."""
    if use_uvloop:
        try:
            import uvloop

            uvloop.run(coro_factory())
            return
        except ImportError:
            pass
    asyncio.run(coro_factory())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--ttft-ms", type=float, default=0.0,
                        help="model pace: ms before the first content token (default 0: at once)")
    parser.add_argument("--tokens-per-s", type=float, default=0.0,
                        help="model pace: output tokens per second (default 0: no generation time)")
    args = parser.parse_args(argv)
    pace = Pace(max(0.0, args.ttft_ms), max(0.0, args.tokens_per_s))
    run(lambda: serve(args.host, args.port, pace=pace), not args.no_uvloop)


if __name__ == "__main__":
    sys.exit(main())
