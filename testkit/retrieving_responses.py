"""The careful model (:mod:`testkit.retrieving_model`) in the OpenAI Responses API: what the
mock upstream answers to a ``/v1/responses`` request that seeks a fact.

Tests only. :func:`seen_of` flattens a request into :class:`~testkit.retrieving_model.Seen`;
:func:`seeking` decides the model's move, and :func:`output_items` renders it as output items:
a short text message and a ``function_call`` of ``headroom_retrieve`` (by key, with the fact as
``query``), or the text answer. When the request includes ``reasoning.encrypted_content`` (as
Codex asks of reasoning models) the answer starts with a reasoning item, whose
``encrypted_content`` names the call it led to; :func:`missing_reasoning` refuses a request
that sends such a call back without it, as the real API refuses a reasoning model's call
whose reasoning item was dropped. ``x-mock-mixed: NAME`` makes a retrieving answer also call
the client's tool ``NAME`` (after the retrieval call). ``x-mock-call-first: NAME`` (with
``x-mock-tool-arguments``) makes the first answer of a conversation, before any call output, a
call to the client's tool ``NAME`` (an agent reading the file that holds the fact: a real CLI
runs it). The mock streams the items as the API does (``testkit.mock_upstream``).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from testkit.retrieving_model import TOOL_NAME, Answer, Seen, decide, seek_of

MIXED_HEADER = "x-mock-mixed"
FIRST_HEADER = "x-mock-call-first"  # before any call output: call the client's tool NAME first
ARGUMENTS_HEADER = "x-mock-tool-arguments"  # its arguments (a JSON object)
LOOKING = "Let me look that up. "  # the short text before a retrieval call
REASONING_INCLUDE = "reasoning.encrypted_content"
OUTPUT_ITEMS = ("function_call_output", "custom_tool_call_output")


class ResponsesTurn(NamedTuple):
    """The careful model's answer: whether it reasons first, its text, its calls (name, arguments)."""

    reasoning: bool
    text: str | None
    calls: list[tuple[str, dict[str, Any]]]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return " ".join(p.get("text") or "" for p in content
                    if isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text"))


def _items(req: dict[str, Any]) -> list[dict[str, Any]]:
    value = req.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return [i for i in value if isinstance(i, dict)] if isinstance(value, list) else []


def newest_user_text(req: dict[str, Any]) -> str:
    for item in reversed(_items(req)):
        if item.get("role") == "user":
            return _text(item.get("content"))
    return ""


def reasons(req: dict[str, Any]) -> bool:
    include = req.get("include")
    return isinstance(include, list) and REASONING_INCLUDE in include


def seen_of(req: dict[str, Any]) -> Seen:
    """User texts and call outputs in order, the retrieval calls already made, whether the tool
    is declared and callable."""
    seen = Seen()
    seen.declared = any(isinstance(t, dict) and t.get("type") == "function" and t.get("name") == TOOL_NAME
                        for t in req.get("tools") or ())
    seen.may_call = req.get("tool_choice") != "none"
    for item in _items(req):
        if item.get("type") in OUTPUT_ITEMS:
            seen.texts.append(_text(item.get("output")))
        elif item.get("role") == "user":
            seen.texts.append(_text(item.get("content")))
        elif item.get("type") == "function_call" and item.get("name") == TOOL_NAME:
            try:
                args = json.loads(item.get("arguments") or "{}")
            except ValueError:
                continue
            if isinstance(args, dict):
                seen.asked.append((args.get("key"), args.get("query")))
    return seen


def seeking(req: dict[str, Any], headers: Any) -> ResponsesTurn | None:
    """The careful model's answer when the request seeks a fact (else None)."""
    fact = seek_of(headers, newest_user_text(req))
    if fact is None:
        return None
    first = headers.get(FIRST_HEADER)
    tool = _client_tool(req, first)
    if tool is not None and not any(item.get("type") in OUTPUT_ITEMS for item in _items(req)):
        return ResponsesTurn(reasons(req), "Let me look.", [(first, _arguments(headers, tool))])
    move = decide(fact, seen_of(req))
    if isinstance(move, Answer):
        return ResponsesTurn(reasons(req), move.text, [])
    calls: list[tuple[str, dict[str, Any]]] = [(TOOL_NAME, {"key": move.key, "query": move.query})]
    mixed = headers.get(MIXED_HEADER)
    tool = _client_tool(req, mixed)
    if tool is not None:
        calls.append((mixed, _required_strings(tool.get("parameters"))))
    return ResponsesTurn(reasons(req), LOOKING, calls)


def _client_tool(req: dict[str, Any], name: Any) -> dict[str, Any] | None:
    if not name:
        return None
    return next((t for t in req.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"
                 and t.get("name") == name), None)


def _arguments(headers: Any, tool: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(headers.get(ARGUMENTS_HEADER) or "null")
    except ValueError:
        value = None
    return value if isinstance(value, dict) else _required_strings(tool.get("parameters"))


def _required_strings(schema: Any) -> dict[str, str]:
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties") or {}
    return {name: "x" for name in schema.get("required") or ()
            if isinstance(props.get(name), dict) and props[name].get("type") == "string"}


def missing_reasoning(req: dict[str, Any]) -> str | None:
    """Why the real API would refuse this request: a retrieval call the mock made after
    reasoning, sent back without its reasoning item before it (matched by
    ``encrypted_content``). None when nothing is missing."""
    if not reasons(req):
        return None
    seen: set[str] = set()
    for item in _items(req):
        if item.get("type") == "reasoning" and isinstance(item.get("encrypted_content"), str):
            seen.add(item["encrypted_content"])
        elif (item.get("type") == "function_call" and item.get("name") == TOOL_NAME
              and str(item.get("call_id", "")).startswith("call_mock")
              and f"mock-encrypted:{item['call_id']}" not in seen):
            return (f"Item '{item.get('id', item['call_id'])}' of type 'function_call' was provided without "
                    "its required 'reasoning' item.")
    return None


def output_items(turn: ResponsesTurn, n: int, resp_id: str) -> tuple[list[dict[str, Any]], int]:
    """The answer's output items (and its reasoning tokens): a reasoning item whose
    ``encrypted_content`` names the first call it led to, a message, the calls."""
    call_ids = [f"call_mock{n:016d}" + (f"_{i}" if i else "") for i in range(len(turn.calls))]
    output: list[dict[str, Any]] = []
    if turn.reasoning:
        output.append({"id": f"rs_mock{n:016d}", "type": "reasoning",
                       "summary": [{"type": "summary_text", "text": "The answer needs one fact."}],
                       "encrypted_content": f"mock-encrypted:{call_ids[0] if call_ids else resp_id}"})
    if turn.text is not None:
        output.append({"id": f"msg_mock{n:016d}", "type": "message", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": turn.text, "annotations": []}]})
    for i, (name, arguments) in enumerate(turn.calls):
        output.append({"id": f"fc_mock{n:016d}" + (f"_{i}" if i else ""), "type": "function_call",
                       "status": "completed", "call_id": call_ids[i], "name": name,
                       "arguments": json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))})
    return output, 8 if turn.reasoning else 0
