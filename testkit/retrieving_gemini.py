"""The careful model (:mod:`testkit.retrieving_model`) in Google Gemini: what the mock upstream
answers to a ``generateContent`` / ``streamGenerateContent`` request that seeks a fact.

Tests only. :func:`seen_of` flattens a request into :class:`~testkit.retrieving_model.Seen`
(user texts and function responses' values, never the model's own calls); :func:`reply_chunks`
renders the model's move as Gemini parts, one list per stream chunk: a short text, then a
``functionCall`` of ``headroom_retrieve`` (by key, with the fact as ``query``) carrying a
``thoughtSignature`` as Gemini 2.5+ models send, or the text answer. As the real API refuses a
function-call turn whose signature was dropped or changed, :func:`signature_refusal` names
such a turn when it comes back. ``x-mock-mixed: NAME`` makes a retrieving answer also call the
client's function ``NAME``, so the proxy must hand the client its own call only.
"""

from __future__ import annotations

import base64
from typing import Any

import ujson

from testkit.retrieving_model import TOOL_NAME, Answer, Seen, decide, seek_of

MIXED_HEADER = "x-mock-mixed"
LEAD = "Let me look that up. "  # the text before a retrieval call (its own chunk in a stream)
SIGNATURE = base64.b64encode(b"mock thought signature").decode()


def _texts(content: Any) -> list[str]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p["text"] for p in parts or () if isinstance(p, dict) and isinstance(p.get("text"), str)]


def newest_user_text(req: dict[str, Any]) -> str:
    """The newest user content that holds text (function responses aside)."""
    for content in reversed(req.get("contents") or []):
        if isinstance(content, dict) and content.get("role", "user") == "user":
            texts = _texts(content)
            if texts:
                return "\n".join(texts)
    return ""


def seek(req: dict[str, Any], headers) -> str | None:
    return seek_of(headers, newest_user_text(req))


def _retrieval_calls(req: dict[str, Any]):
    for content in req.get("contents") or []:
        if isinstance(content, dict) and content.get("role") == "model":
            for part in content.get("parts") or ():
                call = part.get("functionCall") if isinstance(part, dict) else None
                if isinstance(call, dict) and call.get("name") == TOOL_NAME:
                    yield part, call


def seen_of(req: dict[str, Any]) -> Seen:
    seen = Seen()
    for tool in req.get("tools") or ():
        for declaration in (tool.get("functionDeclarations") if isinstance(tool, dict) else None) or ():
            seen.declared = seen.declared or (isinstance(declaration, dict) and declaration.get("name") == TOOL_NAME)
    config = req.get("toolConfig")
    calling = config.get("functionCallingConfig") if isinstance(config, dict) else None
    mode = calling.get("mode") if isinstance(calling, dict) else None
    seen.may_call = str(mode or "AUTO").upper() != "NONE"
    for content in req.get("contents") or []:
        if not isinstance(content, dict) or content.get("role") == "model":
            continue
        seen.texts += _texts(content)
        for part in content.get("parts") or ():
            reply = part.get("functionResponse") if isinstance(part, dict) else None
            response = reply.get("response") if isinstance(reply, dict) else None
            for value in response.values() if isinstance(response, dict) else ():
                seen.texts.append(value if isinstance(value, str) else ujson.dumps(value, ensure_ascii=False))
    for _, call in _retrieval_calls(req):
        args = call.get("args") if isinstance(call.get("args"), dict) else {}
        seen.asked.append((str(args.get("key")), str(args.get("query"))))
    return seen


def signature_refusal(req: dict[str, Any]) -> str | None:
    """Why the real API would refuse this request's retrieval-call turns (None: it would not)."""
    for part, _ in _retrieval_calls(req):
        if part.get("thoughtSignature") != SIGNATURE:
            return "Function call is missing a thought_signature in functionCall parts."
    return None


def reply_chunks(req: dict[str, Any], fact: str, headers, events: int) -> list[list[dict]]:
    """The careful model's answer as Gemini parts, one list per stream chunk (JSON: joined)."""
    move = decide(fact, seen_of(req))
    if isinstance(move, Answer):
        n = max(1, min(events, len(move.text)))
        text = move.text
        return [[{"text": text[i * len(text) // n:(i + 1) * len(text) // n]}] for i in range(n)]
    calls: list[dict] = [{"functionCall": {"name": TOOL_NAME, "args": {"key": move.key, "query": move.query}},
                          "thoughtSignature": SIGNATURE}]
    mixed = headers.get(MIXED_HEADER) if headers is not None else None
    if mixed:
        calls.append({"functionCall": {"name": mixed, "args": {}}})
    return [[{"text": LEAD}], calls]
