"""The retrieval tool in Google Gemini's dialect: the :class:`~headroom.formats.base.ToolLoop`
and :class:`~headroom.formats.base.Splicer` of :mod:`headroom.formats.gemini` (imported only there).

Declared as one more ``tools`` entry, ``{"functionDeclarations": [...]}``, appended last. Its
``parameters`` are Gemini's ``Schema``, an OpenAPI subset: the JSON Schema of
:data:`~headroom.formats.base.INPUT_SCHEMA` with its types upper-cased (``"OBJECT"``,
``"STRING"``, as the API's ``Type`` enum spells them) and what the Developer API refuses
(``additionalProperties``) left out. Not declared when ``generationConfig.candidateCount`` asks
for several candidates (only the first is merged and spliced), nor on a
``streamGenerateContent`` without ``alt=sse``, whose answer is one JSON array of chunks
(:func:`answers_in_an_array`).

A call is a ``functionCall`` part of ``candidates[0].content``; its ``id`` is often absent, so
a call without one gets a name from its position in that content (only the loop sees it). The
model's turn goes back *as sent*: thought parts and ``thoughtSignature`` fields are part of it,
and the API checks them. Results are a user content of ``functionResponse`` parts
``{"name", "response": {"content": text}}`` (``{"error": text}`` for a tool error), with the
call's ``id`` where it had one; the last round sets ``toolConfig.functionCallingConfig.mode``
to ``"NONE"``, leaving ``tools`` as they were (so the cached prefix stays).

A stream (``alt=sse``) is a series of whole ``GenerateContentResponse`` chunks and no end
event, so splicing is per chunk: chunks go out as they come, less the retrieval calls' parts
(a chunk left empty is dropped); the chunk with ``finishReason`` and whatever follows it are
held until :meth:`GeminiSplicer.close` or, when the loop continues, sent on without their end.
A continuation's chunks take the first stream's ``responseId`` and ``modelVersion``, and
every chunk of a continuation, like the final one, carries ``usageMetadata`` summed over the
upstream calls so far. A stream that retrieves nothing goes out byte for byte.

Restoring: a model turn the client got merged or stripped is found again by a fingerprint of
its non-thought text (concatenated: an SDK may keep a stream's text in one part or several)
and its client calls' names and arguments (Gemini's ids are often absent, and an SDK may drop
them). The record holds the contents the upstream saw in its place, and, for a turn whose
retrieval calls were answered only in the record (it also called the client's tools), the
``functionResponse`` parts that go after the client's own in the next user content.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import ujson

from headroom.formats.base import (
    INPUT_SCHEMA,
    TOOL_DESCRIPTION,
    TOOL_NAME,
    ToolAnswer,
    ToolCall,
    Turn,
    data_of,
    dumps,
    split_events,
)

#: Schema keywords Gemini's ``Schema`` takes (OpenAPI 3.0 subset); any other is left out.
_SCHEMA_KEYS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "default", "example", "pattern",
    "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "minProperties",
    "maxProperties", "required", "propertyOrdering",
})
_END_FIELDS = ("finishReason", "finishMessage")  # what makes a chunk the end of an answer
_USAGE_DETAILS = ("promptTokensDetails", "cacheTokensDetails", "candidatesTokensDetails",
                  "toolUsePromptTokensDetails")
_TEXT_ONLY = (frozenset({"text"}), frozenset({"text", "thought"}))
_SSE_END = b"\r\n\r\n"  # as Google ends its events
# An event that may call a function or end the answer (anything else is relayed unread).
_CALL_OR_END = re.compile(rb'"(?:functionCall|finishReason|finishMessage)"')


def gemini_schema(schema: Any) -> Any:
    """A JSON Schema as Gemini's ``Schema``: types upper-case, unsupported keywords dropped."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out[key] = value.upper()
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: gemini_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = gemini_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [gemini_schema(sub) for sub in value]
        elif key in _SCHEMA_KEYS:
            out[key] = value
    return out


#: The ``tools`` entry appended to a request; copied, never handed out.
DECLARATION: dict = {"functionDeclarations": [{
    "name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": gemini_schema(INPUT_SCHEMA),
}]}
_DECLARATION_BYTES = dumps(DECLARATION)


# --- parts and calls -------------------------------------------------------------------------


def _candidate(answer: Any) -> dict | None:
    candidates = answer.get("candidates") if isinstance(answer, dict) else None
    first = candidates[0] if isinstance(candidates, list) and candidates else None
    return first if isinstance(first, dict) else None


def _content_parts(content: Any) -> list:
    parts = content.get("parts") if isinstance(content, dict) else None
    return parts if isinstance(parts, list) else []


def _call(part: Any) -> dict | None:
    call = part.get("functionCall") if isinstance(part, dict) else None
    return call if isinstance(call, dict) else None


def _is_retrieval(part: Any) -> bool:
    call = _call(part)
    return call is not None and call.get("name") == TOOL_NAME


def _call_id(call: dict, position: int) -> str:
    """The call's id, or a name from its position in its content (Gemini often sends none)."""
    found = call.get("id")
    return found if isinstance(found, str) and found else f"part-{position}"


def _turn_of(message: dict) -> Turn:
    retrieval: list[ToolCall] = []
    client_calls = 0
    for position, part in enumerate(_content_parts(message)):
        call = _call(part)
        if call is None:
            continue
        if call.get("name") == TOOL_NAME:
            args = call.get("args")
            retrieval.append(ToolCall(_call_id(call, position), TOOL_NAME, args if isinstance(args, dict) else {}))
        else:
            client_calls += 1
    return Turn(tuple(retrieval), client_calls, message)


def _model_content(content: Any) -> dict:
    """A model content for a request: the answer's content as sent, with its role."""
    if not isinstance(content, dict):
        return {"role": "model", "parts": []}
    return content if content.get("role") == "model" else {**content, "role": "model"}


def _responses(turn: Turn, answers: list[ToolAnswer]) -> list[dict]:
    """``functionResponse`` parts answering the turn's retrieval calls, in the calls' order."""
    by_id = {answer.call.id: answer for answer in answers}
    out = []
    for position, part in enumerate(_content_parts(turn.message)):
        call = _call(part)
        if call is None or call.get("name") != TOOL_NAME:
            continue
        answer = by_id.get(_call_id(call, position))
        if answer is None:
            continue
        reply: dict[str, Any] = {}
        if isinstance(call.get("id"), str) and call["id"]:
            reply["id"] = call["id"]
        reply["name"] = TOOL_NAME
        reply["response"] = {"error": answer.text} if answer.error else {"content": answer.text}
        out.append({"functionResponse": reply})
    return out


def _without_retrieval(message: Any) -> dict:
    content = _model_content(message)
    return {**content, "parts": [p for p in _content_parts(content) if not _is_retrieval(p)]}


def _text_run(part: Any) -> tuple | None:
    """What a stream text fragment joins on (its kind), or None when it is not a bare text part."""
    if isinstance(part, dict) and frozenset(part) in _TEXT_ONLY and isinstance(part.get("text"), str):
        return (frozenset(part), part.get("thought"))
    return None


def joined(parts: list) -> list:
    """A stream's parts as one content holds them: consecutive bare text fragments of the same
    kind joined into one part (any part with more to it, a ``thoughtSignature``, stays as sent)."""
    out: list = []
    run: list[str] = []
    kind = None
    for part in parts:
        this = _text_run(part)
        if run and this != kind:
            out[-1] = {**out[-1], "text": "".join(run)}
            run = []
        if this is not None and run:
            run.append(part["text"])
            continue
        out.append(part)
        if this is not None:
            run, kind = [part["text"]], this
    if run:
        out[-1] = {**out[-1], "text": "".join(run)}
    return out


def fingerprint(content: Any) -> str | None:
    """What identifies a model turn the client re-sends: its non-thought text, concatenated,
    and its calls to the client's tools (name, arguments); None when it has neither."""
    texts: list[str] = []
    calls: list[list] = []
    for part in _content_parts(content):
        if not isinstance(part, dict):
            continue
        call = _call(part)
        if call is not None:
            if call.get("name") != TOOL_NAME:
                calls.append([call.get("name"), call.get("args") or {}])
        elif isinstance(part.get("text"), str) and not part.get("thought"):
            texts.append(part["text"])
    text = "".join(texts)
    if not text and not calls:
        return None
    material = ujson.dumps([text, calls], ensure_ascii=False, sort_keys=True, escape_forward_slashes=False)
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# --- usage -------------------------------------------------------------------------------------


def _sum_details(a: Any, b: Any) -> list:
    """Two ``ModalityTokenCount`` lists, summed per modality (order of first appearance)."""
    totals: dict[Any, int] = {}
    for item in [*(a if isinstance(a, list) else ()), *(b if isinstance(b, list) else ())]:
        if isinstance(item, dict):
            modality = item.get("modality")
            totals[modality] = totals.get(modality, 0) + int(item.get("tokenCount") or 0)
    return [{"modality": m, "tokenCount": n} if m is not None else {"tokenCount": n} for m, n in totals.items()]


def sum_usage(a: dict | None, b: dict | None) -> dict | None:
    """Two ``usageMetadata`` objects as one: counts added (per modality in the details),
    anything else from the later one."""
    if not isinstance(a, dict):
        return b if isinstance(b, dict) else None
    if not isinstance(b, dict):
        return a
    out = dict(a)
    for key, value in b.items():
        before = out.get(key)
        if key in _USAGE_DETAILS:
            out[key] = _sum_details(before, value)
        elif isinstance(value, int) and not isinstance(value, bool) and isinstance(before, int):
            out[key] = before + value
        else:
            out[key] = value
    return out


# --- the loop ----------------------------------------------------------------------------------


def answers_in_an_array(path: str, query: Mapping[str, list[str]] | None) -> bool:
    """Whether the request asks for a stream as one JSON array of chunks
    (``streamGenerateContent`` without ``alt=sse``). The loop reads JSON objects and SSE
    streams only: it would pass such an answer through with any retrieval call in it, so the
    tool is not declared there (no SDK or CLI asks for it: they all send ``alt=sse``)."""
    if not path.endswith(":streamGenerateContent"):
        return False
    return list(query["alt"]) != ["sse"] if query is not None and "alt" in query else True


class GeminiToolLoop:
    """What :mod:`headroom.proxy.tool_loop` needs from Gemini (see the module docstring)."""

    def declare(self, body: dict, path: str = "", query: Mapping[str, list[str]] | None = None) -> bool:
        tools = body.get("tools")
        if not isinstance(tools, list) or not tools or answers_in_an_array(path, query):
            return False
        config = body.get("generationConfig")
        count = config.get("candidateCount") if isinstance(config, dict) else None
        if isinstance(count, int) and count > 1:
            return False  # only the first candidate is merged and spliced
        declares = False
        for tool in tools:
            for declaration in (tool.get("functionDeclarations") if isinstance(tool, dict) else None) or ():
                if isinstance(declaration, dict) and declaration.get("name") == TOOL_NAME:
                    return False
                declares = True
        if not declares:
            return False
        body["tools"] = [*tools, ujson.loads(_DECLARATION_BYTES)]
        return True

    def turn(self, answer: dict) -> Turn:
        candidate = _candidate(answer)
        if candidate is None:
            return Turn((), 0, _model_content(None))
        return _turn_of(_model_content(candidate.get("content")))

    def continue_with(self, body: dict, turn: Turn, answers: list[ToolAnswer], last: bool) -> dict:
        history = body.get("contents")
        out = dict(body)
        out["contents"] = [*(history if isinstance(history, list) else ()), turn.message,
                           {"role": "user", "parts": _responses(turn, answers)}]
        if last:
            config = body.get("toolConfig")
            config = dict(config) if isinstance(config, dict) else {}
            calling = config.get("functionCallingConfig")
            calling = {k: v for k, v in (calling.items() if isinstance(calling, dict) else ())
                       if k != "allowedFunctionNames"}  # only valid with mode ANY
            calling["mode"] = "NONE"
            config["functionCallingConfig"] = calling
            out["toolConfig"] = config
        return out

    def merge(self, answers: list[dict]) -> dict:
        first, last = answers[0], answers[-1]
        if not isinstance(first, dict):
            return first
        parts: list = []
        usage: dict | None = None
        for answer in answers:
            candidate = _candidate(answer)
            if candidate is not None:
                parts += [p for p in _content_parts(candidate.get("content")) if not _is_retrieval(p)]
            if isinstance(answer, dict):
                usage = sum_usage(usage, answer.get("usageMetadata"))
        out = dict(first)
        head, tail = _candidate(first), _candidate(last)
        if head is not None:
            candidate = {**(tail if tail is not None else head)}
            candidate["content"] = {**_model_content(head.get("content")), "parts": parts}
            out["candidates"] = [candidate, *first["candidates"][1:]]
        if usage is not None:
            out["usageMetadata"] = usage
        return out

    def splicer(self) -> GeminiSplicer:
        return GeminiSplicer()

    def turn_keys(self, body: dict) -> list[tuple[int, str]]:
        history = body.get("contents")
        out = []
        for index, content in enumerate(history if isinstance(history, list) else ()):
            if not isinstance(content, dict) or content.get("role") != "model":
                continue
            if any(_is_retrieval(p) for p in _content_parts(content)):
                continue  # already the upstream's view
            found = fingerprint(content)
            if found is not None:
                out.append((index, found))
        return out

    def record(self, visible: Any, turns: list[Turn], answers: list[list[ToolAnswer]]) -> tuple[str, dict]:
        contents: list = []
        pending: list = []
        for i, turn in enumerate(turns):
            answered = answers[i] if i < len(answers) else []
            if i < len(turns) - 1:
                contents += [turn.message, {"role": "user", "parts": _responses(turn, answered)}]
            elif turn.retrieval and answered:  # answered with the client's results, on its next request
                contents.append(turn.message)
                pending = _responses(turn, answered)
            else:  # unanswered retrieval calls would leave the upstream a call without a response
                contents.append(_without_retrieval(turn.message) if turn.retrieval else turn.message)
        return fingerprint(visible) or "", {"contents": contents, "pending": pending}

    def restore(self, body: dict, index: int, record: dict) -> None:
        history = body.get("contents")
        contents = record.get("contents") if isinstance(record, dict) else None
        pending = record.get("pending") if isinstance(record, dict) else None
        if not (isinstance(history, list) and 0 <= index < len(history) and isinstance(contents, list) and contents):
            return
        target = history[index]
        if not isinstance(target, dict) or target.get("role") != "model":
            return
        new = [*history[:index], *contents, *history[index + 1:]]
        after = index + len(contents)
        if isinstance(pending, list) and pending and after < len(new) and isinstance(new[after], dict) \
                and new[after].get("role", "user") == "user":
            parts = list(_content_parts(new[after]))
            at = max((i + 1 for i, p in enumerate(parts) if isinstance(p, dict) and "functionResponse" in p),
                     default=len(parts))
            new[after] = {**new[after], "parts": [*parts[:at], *pending, *parts[at:]]}
        body["contents"] = new


# --- the stream ----------------------------------------------------------------------------------


class _Held:
    """A chunk at or after the answer's end, kept until the answer ends or continues."""

    __slots__ = ("chunk", "parts", "raw", "stripped")

    def __init__(self, raw: bytes, chunk: dict, parts: list, stripped: bool) -> None:
        self.raw = raw
        self.chunk = chunk
        self.parts = parts  # its parts less the retrieval calls
        self.stripped = stripped


class GeminiSplicer:
    """One client stream across the upstream streams of its request (see the module docstring)."""

    def __init__(self) -> None:
        self._identity: dict | None = None  # responseId and modelVersion of the first chunk
        self._continued = False  # a continuation is under way: chunks are rewritten
        self._done_usage: dict | None = None  # summed over the upstream streams before this one
        self._usage: dict | None = None  # the current stream's latest
        self._parts: list = []  # the current stream's parts, retrieval calls included, as they came
        self._visible: list = []  # every part the client gets, as they came
        self._held: list[_Held] = []
        self._ended = False  # the current stream sent its finishReason
        self._queued: list[bytes] = []  # the previous stream's held text, sent with the next events
        self._unread: list[bytes] = []  # events relayed as they were, not read yet

    def feed(self, events: bytes) -> bytes:
        if not (self._continued or self._ended or _CALL_OR_END.search(events)):
            self._unread.append(events)  # the first stream's text on its way: out at once, read when needed
            return events
        self._read()
        out, self._queued = self._queued, []
        for raw in split_events(events):
            chunk = self._absorb(raw)
            if chunk is None:
                out.append(raw)  # comments, errors: the client's as they are
                continue
            candidate = _candidate(chunk)
            parts = _content_parts(candidate.get("content")) if candidate is not None else []
            kept = [p for p in parts if not _is_retrieval(p)]
            stripped = len(kept) != len(parts)
            if self._ended or (candidate is not None and any(k in candidate for k in _END_FIELDS)):
                self._ended = True
                self._held.append(_Held(raw, chunk, kept, stripped))
            elif stripped and not kept:
                continue  # nothing left of it but a retrieval call
            elif stripped or self._continued:
                out.append(self._render(chunk, kept, chunk.get("usageMetadata")))
            else:
                out.append(raw)
        return b"".join(out)

    def _absorb(self, raw: bytes) -> dict | None:
        """Take in one event: its chunk (None when it is none: a comment, an error), whose
        parts and usage now count."""
        data = data_of(raw)
        try:
            chunk = ujson.loads(data) if data else None
        except ValueError:
            return None
        if not isinstance(chunk, dict) or "error" in chunk:
            return None
        if self._identity is None:
            self._identity = {k: chunk[k] for k in ("responseId", "modelVersion") if k in chunk}
        usage = chunk.get("usageMetadata")
        if isinstance(usage, dict):
            self._usage = usage
        candidate = _candidate(chunk)
        parts = _content_parts(candidate.get("content")) if candidate is not None else []
        self._parts += parts
        self._visible += [p for p in parts if not _is_retrieval(p)]
        return chunk

    def _read(self) -> None:
        """Take in the events relayed unread (a stream's text is only read once its turn is asked for)."""
        unread, self._unread = self._unread, []
        for events in unread:
            if events.count(b"data:") == 1 and events.startswith(b"data:"):
                self._absorb(events)  # one event (the usual case): no need to cut it out
            else:
                for raw in split_events(events):
                    self._absorb(raw)

    def turn(self) -> Turn:
        self._read()
        return _turn_of({"role": "model", "parts": joined(self._parts)})

    def resume(self) -> None:
        self._read()
        for held in self._held:  # the end goes; what it said goes out before the continuation
            if held.parts:
                self._queued.append(self._render(held.chunk, held.parts, held.chunk.get("usageMetadata"), end=False))
        self._done_usage = sum_usage(self._done_usage, self._usage)
        self._usage = None
        self._parts, self._held, self._ended, self._continued = [], [], False, True

    def close(self) -> bytes:
        self._read()
        out, self._queued = self._queued, []
        if not self._continued and not any(h.stripped for h in self._held):
            out += [held.raw for held in self._held]  # nothing changed: as the upstream sent it
        else:
            for i, held in enumerate(self._held):
                final = i == len(self._held) - 1
                usage = self.usage if final else held.chunk.get("usageMetadata")
                out.append(self._render(held.chunk, held.parts, usage, summed=final))
        self._held = []
        return b"".join(out)

    def visible(self) -> Any:
        self._read()
        return {"role": "model", "parts": joined(self._visible)}

    @property
    def usage(self) -> dict | None:
        self._read()
        return sum_usage(self._done_usage, self._usage)

    def _render(self, chunk: dict, parts: list, usage: Any, end: bool = True, summed: bool = False) -> bytes:
        """The chunk as the client gets it: ``parts`` in place of its parts (no content when
        none), the first stream's identity, usage summed with the streams before, and without
        its end unless ``end``."""
        out = dict(chunk)
        candidate = _candidate(chunk)
        if candidate is not None:
            candidate = {k: v for k, v in candidate.items() if end or k not in _END_FIELDS}
            if parts:
                candidate["content"] = {**_model_content(candidate.get("content")), "parts": parts}
            else:
                candidate.pop("content", None)
            out["candidates"] = [candidate, *chunk["candidates"][1:]]
        if self._continued and self._identity:
            out.update({k: v for k, v in self._identity.items() if k in out})
        if isinstance(usage, dict):
            out["usageMetadata"] = usage if summed else sum_usage(self._done_usage, usage)
        return b"data: " + dumps(out) + _SSE_END
