"""The careful model (:mod:`testkit.retrieving_model`) in Anthropic Messages: what the mock
upstream answers to a ``/v1/messages`` request that seeks a fact.

Tests only. :func:`seen_of` flattens a request into :class:`~testkit.retrieving_model.Seen`;
:func:`reply_blocks` renders the model's move as content blocks: a short text and a
``tool_use`` of ``headroom_retrieve`` (by key, with the fact as ``query``), or the text answer.
The retrieval tool is the proxy's, or ``headroom mcp``'s as an MCP client names it
(``mcp__headroom__headroom_retrieve``), called by that name. Claude Code defers MCP tools: it
lists their names in a reminder and declares one (with ``defer_loading``) once its
``ToolSearch`` tool has loaded it, so the model first calls ``ToolSearch`` with
``select:<name>``, as Claude does.
With ``thinking`` enabled the answer starts with a thinking block whose signature the mock
checks when the turn comes back (:func:`thinking_refusal`), as the real API refuses a tool-use
turn whose thinking was dropped or changed. ``x-mock-mixed: NAME`` makes a retrieving answer
also call the client's tool ``NAME`` (after the retrieval call), so the proxy must hand the
client its own call only. ``x-mock-call-first: NAME`` (with ``x-mock-tool-arguments``) makes
the first answer of a conversation a call to the client's tool ``NAME`` (an agent reading the
file that holds the fact: a real CLI runs it). :func:`stream_frames` renders the blocks as the API streams them.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import ujson

from testkit.retrieving_model import Answer, Load, Retrieve, Seen, decide, is_retrieval, retrieval_tool, seek_of

TOOL_SEARCH = "ToolSearch"  # Claude Code's tool that loads a deferred tool ({"query": "select:NAME"})
_DEFERRED_NAME = re.compile(r"\bmcp__\w+__headroom_retrieve\b")  # as Claude Code lists deferred MCP tools
MIXED_HEADER = "x-mock-mixed"
FIRST_HEADER = "x-mock-call-first"  # before any tool result: call the client's tool NAME first
ARGUMENTS_HEADER = "x-mock-tool-arguments"  # its arguments (a JSON object)
RETRIEVE_PREAMBLE = "Let me get that line back."
LOAD_PREAMBLE = "Let me load the retrieval tool."


def _dumps(obj: Any) -> bytes:
    return ujson.dumps(obj, ensure_ascii=False, escape_forward_slashes=False).encode()


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text"
            and isinstance(p.get("text"), str)]


def newest_user_text(req: dict[str, Any]) -> str:
    """The newest user message that holds text (tool results aside)."""
    for msg in reversed(req.get("messages") or []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            text = " ".join(_texts(msg.get("content")))
            if text.strip():
                return text
    return ""


def seek(req: dict[str, Any], headers) -> str | None:
    return seek_of(headers, newest_user_text(req))


def _blocks(req: dict[str, Any], role: str, kind: str):
    for msg in req.get("messages") or []:
        content = msg.get("content") if isinstance(msg, dict) and msg.get("role") == role else None
        for block in content if isinstance(content, list) else ():
            if isinstance(block, dict) and block.get("type") == kind:
                yield block


def _loaded(req: dict[str, Any]) -> list[str]:
    """The tools the model may call: those declared, a deferred one (``defer_loading``) only
    once a ``tool_reference`` block in a tool result has loaded it, as the API does."""
    referenced = {ref.get("tool_name") for result in _blocks(req, "user", "tool_result")
                  if isinstance(result.get("content"), list)
                  for ref in result["content"] if isinstance(ref, dict) and ref.get("type") == "tool_reference"}
    tools = req.get("tools") if isinstance(req.get("tools"), list) else []
    return [t.get("name") for t in tools if isinstance(t, dict)
            and (t.get("defer_loading") is not True or t.get("name") in referenced)]


def _deferred(req: dict[str, Any], texts: list[str], loaded: list[str]) -> str | None:
    """The retrieval tool's name when the client (Claude Code) lists it among its deferred tools
    and offers ``ToolSearch`` to load it, and the model has not asked for it yet."""
    if TOOL_SEARCH not in loaded:
        return None
    names = [name for text in texts for name in _DEFERRED_NAME.findall(text)]
    searched = " ".join(str((call.get("input") or {}).get("query")) for call in _blocks(req, "assistant", "tool_use")
                        if call.get("name") == TOOL_SEARCH)
    return next((name for name in names if name not in searched), None)


def seen_of(req: dict[str, Any]) -> Seen:
    seen = Seen()
    for msg in req.get("messages") or []:
        if isinstance(msg, dict) and msg.get("role") == "user":
            seen.texts += _texts(msg.get("content"))
            for block in msg.get("content") if isinstance(msg.get("content"), list) else ():
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    seen.texts += _texts(block.get("content"))
    for block in _blocks(req, "assistant", "tool_use"):
        if is_retrieval(block.get("name")) and isinstance(block.get("input"), dict):
            seen.asked.append((str(block["input"].get("key")), str(block["input"].get("query"))))
    loaded = _loaded(req)
    tool = retrieval_tool(loaded)
    seen.declared, seen.tool = tool is not None, tool or seen.tool
    seen.deferred = None if seen.declared else _deferred(req, seen.texts, loaded)
    choice = req.get("tool_choice")
    seen.may_call = not (isinstance(choice, dict) and choice.get("type") == "none")
    return seen


def thinking_on(req: dict[str, Any]) -> bool:
    thinking = req.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


def signature(thinking: str) -> str:
    """The mock's signature of a thinking text (the real API's is opaque; this one is checkable)."""
    return base64.b64encode(hashlib.sha256(b"mock-signature:" + thinking.encode()).digest()).decode()


def thinking_refusal(req: dict[str, Any]) -> str | None:
    """Why the real API would refuse this request for its thinking, or None.

    With thinking on: ``tool_choice`` may only be ``auto`` or ``none``; and an assistant turn
    with tool calls that is answered by the final user message must start with its thinking
    block, unchanged (the signature must match)."""
    if not thinking_on(req):
        return None
    choice = req.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") not in (None, "auto", "none"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    messages = [m for m in req.get("messages") or [] if isinstance(m, dict)]
    if len(messages) < 2 or messages[-1].get("role") != "user":
        return None
    last, turn = messages[-1], messages[-2]
    answered = isinstance(last.get("content"), list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in last["content"])
    content = turn.get("content")
    if not answered or turn.get("role") != "assistant" or not isinstance(content, list):
        return None
    calls = any(isinstance(b, dict) and b.get("type") == "tool_use" for b in content)
    first = content[0] if content and isinstance(content[0], dict) else {}
    index = len(messages) - 2
    if calls and first.get("type") not in ("thinking", "redacted_thinking"):
        return (f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                f"`{first.get('type')}`. When `thinking` is enabled, a final `assistant` message must start with a "
                "thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks).")
    if first.get("type") == "thinking" and first.get("signature") != signature(str(first.get("thinking"))):
        return f"messages.{index}.content.0: Invalid `signature` in `thinking` block"
    return None


def _client_call(req: dict[str, Any], name: str | None, arguments: dict | None, new_id) -> dict[str, Any] | None:
    """A call to the client's tool ``name`` (None when the request does not offer it): the given
    arguments, else the schema's required strings, each "x"."""
    tools = req.get("tools") if isinstance(req.get("tools"), list) else []
    tool = next((t for t in tools if isinstance(t, dict) and t.get("name") == name), None)
    if not name or tool is None:
        return None
    if arguments is None:
        schema = tool.get("input_schema") or {}
        props = schema.get("properties") or {}
        arguments = {key: "x" for key in schema.get("required") or ()
                     if isinstance(props.get(key), dict) and props[key].get("type") == "string"}
    return {"type": "tool_use", "id": new_id(), "name": name, "input": arguments}


def _has_tool_result(req: dict[str, Any]) -> bool:
    return any(isinstance(m, dict) and isinstance(m.get("content"), list)
               and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in m["content"])
               for m in req.get("messages") or [])


def _arguments(headers) -> dict | None:
    try:
        value = ujson.loads(headers.get(ARGUMENTS_HEADER) or "null")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def reply_blocks(req: dict[str, Any], fact: str, headers, new_id) -> list[dict[str, Any]]:
    """The careful model's answer as content blocks (``new_id()`` gives fresh tool-use ids)."""
    blocks: list[dict[str, Any]] = []
    if thinking_on(req):
        thought = f"I need the line that mentions {fact}."
        blocks.append({"type": "thinking", "thinking": thought, "signature": signature(thought)})
    first = None if _has_tool_result(req) else _client_call(req, headers.get(FIRST_HEADER), _arguments(headers),
                                                             new_id)
    if first is not None:  # an agent's first step: run the client's tool whose output holds the fact
        return [*blocks, {"type": "text", "text": "Let me look."}, first]
    move = decide(fact, seen_of(req))
    if isinstance(move, Answer):
        blocks.append({"type": "text", "text": move.text})
        return blocks
    if isinstance(move, Load):
        return [*blocks, {"type": "text", "text": LOAD_PREAMBLE},
                {"type": "tool_use", "id": new_id(), "name": TOOL_SEARCH, "input": {"query": f"select:{move.tool}"}}]
    assert isinstance(move, Retrieve)
    blocks.append({"type": "text", "text": RETRIEVE_PREAMBLE})
    blocks.append({"type": "tool_use", "id": new_id(), "name": move.tool,
                   "input": {"key": move.key, "query": move.query}})
    mixed = _client_call(req, headers.get(MIXED_HEADER), None, new_id)
    if mixed is not None:
        blocks.append(mixed)
    return blocks


def output_tokens(blocks: list[dict[str, Any]]) -> int:
    return max(1, len(_dumps(blocks)) // 4)


def _event(obj: dict[str, Any]) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + _dumps(obj) + b"\n\n"


def _pieces(text: str, n: int = 2) -> list[str]:
    n = max(1, min(n, len(text)))
    return [text[i * len(text) // n:(i + 1) * len(text) // n] for i in range(n)]


def stream_frames(message: dict[str, Any]) -> list[bytes]:
    """A whole message as the API streams it: ``message_start``, each block's start, deltas and
    stop (a ``ping`` after the first start), ``message_delta`` with the stop reason and the
    output tokens, ``message_stop``."""
    usage = dict(message["usage"])
    output = usage.pop("output_tokens")
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**usage, "output_tokens": 1}}
    frames = [_event({"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "thinking":
            opening: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif kind == "text":
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
        else:
            opening = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p}
                      for p in _pieces(_dumps(block["input"]).decode())]
        frames.append(_event({"type": "content_block_start", "index": index, "content_block": opening}))
        if index == 0:
            frames.append(_event({"type": "ping"}))
        frames += [_event({"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
        frames.append(_event({"type": "content_block_stop", "index": index}))
    frames.append(_event({"type": "message_delta",
                          "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                          "usage": {"output_tokens": output}}))
    frames.append(_event({"type": "message_stop"}))
    return frames
