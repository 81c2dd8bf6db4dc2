"""The retrieval tool in Chat Completions: declaring it, recognising its calls, continuing a
conversation, merging answers, splicing streams, and putting a spliced turn back.

A helper module of :mod:`headroom.formats.chat` (the seam is
:class:`~headroom.formats.base.ToolLoop`; the loop that does the I/O is
:mod:`headroom.proxy.tool_loop`).

Chat Completions has one choice per answer (``n`` > 1 is left alone: the tool is not
declared), calls are ``tool_calls`` of the assistant message with JSON-string
``arguments``, and results are ``{"role": "tool", "tool_call_id", "content"}`` messages.
In a stream, a call's first delta carries its ``index``, ``id`` and ``function.name``; later
deltas carry only the ``index`` and pieces of ``arguments``, so a retrieval call is known by
its index from its first delta on. The end of an answer is a chunk with ``finish_reason``,
then (when asked for, ``stream_options.include_usage``) a usage-only chunk, then
``data: [DONE]``.

Prefix stability: the client gets one assistant message (texts concatenated, its own calls
only); the upstream saw [turn 1 with its retrieval calls], [their results], [turn 2] … .
:meth:`ChatToolLoop.record` keeps the latter under a fingerprint of the former (its texts and
its calls' ids, which survive an SDK's re-serialising), and :meth:`ChatToolLoop.restore`
puts it back on every later request. A mixed turn (the client's calls and retrieval calls
in one answer) is put back with all its calls, and the retrieval results go right after the
client's own results for that turn.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    messages_of,
    split_events,
)

#: The fields that say which completion a chunk belongs to: the first stream's win.
IDENTITY = ("id", "object", "created", "model", "system_fingerprint", "service_tier")


def definition() -> dict:
    """The tool in Chat Completions' shape (a new dict each time, always the same bytes)."""
    return {"type": "function", "function": {"name": TOOL_NAME, "description": TOOL_DESCRIPTION,
                                             "parameters": json.loads(json.dumps(INPUT_SCHEMA))}}


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _name_of(call: Any) -> str | None:
    fn = call.get("function") if isinstance(call, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    return name if isinstance(name, str) else None


def _is_retrieval(call: Any) -> bool:
    return _name_of(call) == TOOL_NAME


def _parsed(raw: Any) -> dict:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def tool_message(answer: ToolAnswer) -> dict:
    """One retrieval result as the upstream sees it (continuation and restore alike)."""
    return {"role": "tool", "tool_call_id": answer.call.id, "content": answer.text}


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content] if content else []
    if isinstance(content, list):
        return [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str) and p["text"]]
    return []


def fingerprint(message: Any) -> str | None:
    """A model turn's fingerprint from its text and its client calls' ids; None when it has neither."""
    if not isinstance(message, dict):
        return None
    texts = _texts(message.get("content"))
    ids = [c["id"] for c in message.get("tool_calls") or ()
           if isinstance(c, dict) and isinstance(c.get("id"), str) and not _is_retrieval(c)]
    if not texts and not ids:
        return None
    return hashlib.sha256(json.dumps(["\n".join(texts), ids]).encode()).hexdigest()[:32]


def request_message(message: dict) -> dict:
    """An answer's assistant message in request shape: its text and every call, as sent."""
    out: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        out["tool_calls"] = message["tool_calls"]
    return out


def sum_usage(a: dict | None, b: dict | None) -> dict | None:
    """Two usage objects as one: counts added (the ``*_tokens_details`` too), anything else
    the first's (or the second's where the first has none)."""
    if a is None or b is None:
        return a if b is None else b
    out = dict(a)
    for key, value in b.items():
        mine = out.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and isinstance(mine, int):
            out[key] = mine + value
        elif isinstance(value, dict) and isinstance(mine, dict):
            out[key] = sum_usage(mine, value)
        elif mine is None:
            out[key] = value
    return out


def _joined(values: list) -> Any:
    """Strings concatenated (None when none is a string), lists chained (None when none is one)."""
    strings = [v for v in values if isinstance(v, str)]
    if strings:
        return "".join(strings)
    lists = [v for v in values if isinstance(v, list)]
    return [x for v in lists for x in v] if lists else None


class ChatToolLoop:
    """:class:`~headroom.formats.base.ToolLoop` for Chat Completions."""

    def declare(self, body: dict, path: str = "", query: Mapping[str, list[str]] | None = None) -> bool:
        tools = body.get("tools")
        if not isinstance(tools, list) or not tools or body.get("n") not in (None, 1):
            return False
        if any(_is_retrieval(tool) for tool in tools):
            return False
        body["tools"] = [*tools, definition()]
        return True

    def turn(self, answer: dict) -> Turn:
        message = _message_of(answer)
        calls = message["tool_calls"] if isinstance(message.get("tool_calls"), list) else []
        retrieval = tuple(ToolCall(_str(c.get("id")), TOOL_NAME, _parsed(_dict(c.get("function")).get("arguments")))
                          for c in calls if _is_retrieval(c))
        return Turn(retrieval, len(calls) - len(retrieval), request_message(message))

    def continue_with(self, body: dict, turn: Turn, answers: list[ToolAnswer], last: bool) -> dict:
        out = dict(body)
        out["messages"] = [*messages_of(body), turn.message, *(tool_message(a) for a in answers)]
        if last:
            out["tool_choice"] = "none"
        return out

    def merge(self, answers: list[dict]) -> dict:
        first, last = answers[0], answers[-1]
        choices = [a["choices"][0] for a in answers
                   if isinstance(a.get("choices"), list) and a["choices"] and isinstance(a["choices"][0], dict)]
        out = dict(first)
        for key in IDENTITY:
            if key not in first and key in last:
                out[key] = last[key]
        usage = None
        for answer in answers:
            if isinstance(answer.get("usage"), dict):
                usage = sum_usage(usage, answer["usage"])
        if usage is not None:
            out["usage"] = usage
        if not choices:
            return out
        messages = [c["message"] if isinstance(c.get("message"), dict) else {} for c in choices]
        message = dict(messages[-1])
        message["content"] = _joined([m.get("content") for m in messages])
        if any("annotations" in m for m in messages):
            message["annotations"] = _joined([m.get("annotations") for m in messages]) or []
        calls = [c for m in messages for c in _list(m.get("tool_calls")) if not _is_retrieval(c)]
        if calls:
            message["tool_calls"] = [{**c, "index": i} if isinstance(c, dict) and "index" in c else c
                                     for i, c in enumerate(calls)]
        else:
            message.pop("tool_calls", None)
        choice = dict(choices[-1])
        choice["index"] = choices[0].get("index", 0)
        choice["message"] = message
        if choice.get("finish_reason") == "tool_calls" and not calls:
            choice["finish_reason"] = "stop"  # only retrieval calls, which the client never sees
        logprobs = [c["logprobs"] for c in choices if isinstance(c.get("logprobs"), dict)]
        if len(choices) > 1 and len(logprobs) == len(choices):  # token logprobs of every call, in order
            choice["logprobs"] = {k: _joined([p.get(k) for p in logprobs]) for k in logprobs[0]}
        out["choices"] = [choice]
        return out

    def splicer(self) -> ChatSplicer:
        return ChatSplicer()

    def turn_keys(self, body: dict) -> list[tuple[int, str]]:
        keys = []
        for i, message in enumerate(messages_of(body)):
            if isinstance(message, dict) and message.get("role") == "assistant":
                found = fingerprint(message)
                if found is not None:
                    keys.append((i, found))
        return keys

    def record(self, visible: Any, turns: list[Turn], answers: list[list[ToolAnswer]]) -> tuple[str, dict]:
        key = fingerprint(visible) or hashlib.sha256(b"").hexdigest()[:32]
        return key, {"turns": [t.message for t in turns],
                     "results": [[tool_message(a) for a in group] for group in answers]}

    def restore(self, body: dict, index: int, record: dict) -> None:
        messages = messages_of(body)
        turns, results = record.get("turns"), record.get("results")
        if (not isinstance(turns, list) or not turns or not isinstance(results, list)
                or not 0 <= index < len(messages) or not isinstance(messages[index], dict)
                or messages[index].get("role") != "assistant"):
            return
        seen: list = []
        for k, turn in enumerate(turns):
            seen.append(turn)
            if k < len(turns) - 1 and k < len(results) and isinstance(results[k], list):
                seen += results[k]
        after = messages[index + 1:]
        late = results[len(turns) - 1] if len(results) >= len(turns) else None
        if isinstance(late, list) and late:  # a mixed turn: after the client's own results
            end = 0
            while end < len(after) and isinstance(after[end], dict) and after[end].get("role") == "tool":
                end += 1
            after = [*after[:end], *late, *after[end:]]
        body["messages"] = [*messages[:index], *seen, *after]


def _message_of(answer: Any) -> dict:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict):
            return message
    return {}


# --- streams -------------------------------------------------------------------------------


@dataclass
class _Call:
    """One tool call of the current stream, as its deltas arrive."""

    id: str
    name: str
    retrieval: bool
    out: int  # its index in what the client gets (client calls only)
    arguments: list[str] = field(default_factory=list)

    def request_shape(self) -> dict:
        arguments = "".join(self.arguments)
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": arguments}}


@dataclass
class _Held:
    """An event held back until :meth:`ChatSplicer.close`: its bytes and its JSON (None: ``[DONE]``)."""

    raw: bytes
    chunk: dict | None


class ChatSplicer:
    """:class:`~headroom.formats.base.Splicer` for Chat Completions streams.

    Relayed untouched (byte for byte) unless a chunk must change: a retrieval call's deltas
    are dropped, the client's calls are renumbered after them, a continuation's chunks take
    the first stream's identity and lose their role-only opening. The finish chunk, the
    usage chunk and ``[DONE]`` are held until :meth:`close`, which sends one of each (usage
    summed over every upstream call) — the very bytes the upstream sent when nothing was
    spliced."""

    def __init__(self) -> None:
        self._identity: dict[str, Any] | None = None
        self._streams = 1
        self._spliced = False  # whether anything the client gets differs from the upstream's bytes
        self._client_calls: list[_Call] = []
        self._texts: list[str] = []
        self._any_text = False
        self._usage: dict | None = None
        self._finish: _Held | None = None
        self._usage_chunk: _Held | None = None
        self._done: _Held | None = None
        self._eol = b"\n\n"
        self._new_stream()

    def _new_stream(self) -> None:
        self._calls: dict[int, _Call] = {}
        self._stream_texts: list[str] = []
        self._stream_any_text = False

    @property
    def usage(self) -> dict | None:
        return self._usage

    def feed(self, events: bytes) -> bytes:
        if events.find(b"\n\n") == len(events) - 2 and b"\r" not in events:  # one event, the common case
            return self._one(events)
        return b"".join(self._one(event) for event in split_events(events))

    def _one(self, event: bytes) -> bytes:
        if event.startswith(b"data: ") and event.find(b"\n") == len(event) - 2:  # one data line (LF)
            data: bytes | None = event[6:-2]
        else:
            data = data_of(event)
        if data is None:
            return event  # a comment (keep-alive) or an empty event
        if data.strip() == b"[DONE]":
            self._done = _Held(event, None)
            return b""
        try:
            chunk = ujson.loads(data)
        except ValueError:
            return event
        if not isinstance(chunk, dict) or "error" in chunk:
            return event
        self._eol = b"\r\n\r\n" if event.endswith(b"\r\n\r\n") else self._eol
        changed = self._identify(chunk)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = sum_usage(self._usage, usage)
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            if isinstance(usage, dict):
                self._usage_chunk = _Held(event, chunk)
                return b""
            return self._out(event, chunk, changed)
        delta = choices[0].get("delta")
        if (self._streams == 1 and isinstance(delta, dict) and "tool_calls" not in delta
                and choices[0].get("finish_reason") is None and not isinstance(usage, dict)):
            if isinstance(delta.get("content"), str):  # the common chunk: text, relayed as it came
                self._stream_texts.append(delta["content"])
                self._stream_any_text = True
            return event
        choice = dict(choices[0])
        kept, changed_delta = self._delta(_dict(delta))
        changed = changed or changed_delta
        if choice.get("finish_reason") is not None:
            finish = {**chunk, "choices": [{**choice, "delta": {}}, *choices[1:]]}
            self._finish = _Held(event, finish)
            if not _meaningful(kept):
                return b""
            self._finish.raw = b""  # its delta goes out now: the held chunk is no longer the upstream's
            choice["finish_reason"] = None
            if isinstance(usage, dict):
                chunk = {**chunk, "usage": None}
            changed = True
        if changed and not _meaningful(kept) and not choice.get("logprobs"):
            return b""
        if changed:
            choice["delta"] = kept
            chunk = {**chunk, "choices": [choice, *choices[1:]]}
        return self._out(event, chunk, changed)

    def _identify(self, chunk: dict) -> bool:
        """Remember the first stream's identity; give a continuation's chunk that identity."""
        if self._identity is None:
            self._identity = {k: chunk[k] for k in IDENTITY if k in chunk}
            return False
        if self._streams == 1:
            return False
        for key, value in self._identity.items():
            chunk[key] = value
        return True

    def _delta(self, delta: dict) -> tuple[dict, bool]:
        """The delta the client gets, and whether it differs from the upstream's."""
        kept = dict(delta)
        changed = False
        if self._streams > 1 and "role" in kept:
            del kept["role"]  # the continuation's opening: the client had its role already
            changed = True
        content = delta.get("content")
        if isinstance(content, str):
            self._stream_texts.append(content)
            self._stream_any_text = True
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            passed = []
            for piece in calls:
                call = self._call(piece)
                if call is None:
                    passed.append(piece)
                elif not call.retrieval:
                    passed.append(piece if piece.get("index") == call.out else {**piece, "index": call.out})
            if passed != calls:
                changed = True
                if passed:
                    kept["tool_calls"] = passed
                else:
                    del kept["tool_calls"]
        return kept, changed

    def _call(self, piece: Any) -> _Call | None:
        """The call a tool-call delta belongs to (None: not a call delta we can follow)."""
        if not isinstance(piece, dict) or not isinstance(piece.get("index"), int):
            return None
        call = self._calls.get(piece["index"])
        fn = _dict(piece.get("function"))
        if call is None:
            name = _str(fn.get("name"))
            retrieval = name == TOOL_NAME
            call = _Call(_str(piece.get("id")), name, retrieval, -1 if retrieval else len(self._client_calls))
            self._calls[piece["index"]] = call
            if not retrieval:
                self._client_calls.append(call)
            if retrieval:
                self._spliced = True
        elif isinstance(piece.get("id"), str) and not call.id:
            call.id = piece["id"]
        if isinstance(fn.get("arguments"), str):
            call.arguments.append(fn["arguments"])
        return call

    def _out(self, event: bytes, chunk: dict, changed: bool) -> bytes:
        if not changed:
            return event
        self._spliced = True
        return self._event(chunk)

    def _event(self, chunk: dict) -> bytes:
        return b"data: " + dumps(chunk) + self._eol

    def turn(self) -> Turn:
        calls = [self._calls[i] for i in sorted(self._calls)]
        message: dict[str, Any] = {"role": "assistant",
                                   "content": "".join(self._stream_texts) if self._stream_any_text else None}
        if calls:
            message["tool_calls"] = [c.request_shape() for c in calls]
        retrieval = tuple(ToolCall(c.id, c.name, _parsed("".join(c.arguments))) for c in calls if c.retrieval)
        return Turn(retrieval, sum(1 for c in calls if not c.retrieval), message)

    def resume(self) -> None:
        self._texts += self._stream_texts
        self._any_text = self._any_text or self._stream_any_text
        self._streams += 1
        self._spliced = True
        self._new_stream()

    def visible(self) -> Any:
        texts = self._texts + self._stream_texts
        message: dict[str, Any] = {"role": "assistant",
                                   "content": "".join(texts) if self._any_text or self._stream_any_text else None}
        if self._client_calls:
            message["tool_calls"] = [c.request_shape() for c in self._client_calls]
        return message

    def close(self) -> bytes:
        held = [h for h in (self._finish, self._usage_chunk, self._done) if h is not None]
        if not self._spliced and all(h.raw for h in held):
            return b"".join(h.raw for h in held)
        out = []
        if self._finish is not None and self._finish.chunk is not None:
            finish = {**self._finish.chunk, **(self._identity or {})}
            choice = dict(finish["choices"][0])
            if choice.get("finish_reason") == "tool_calls" and not self._client_calls:
                choice["finish_reason"] = "stop"  # only retrieval calls, which the client never sees
            finish["choices"] = [choice, *finish["choices"][1:]]
            if isinstance(finish.get("usage"), dict):
                finish["usage"] = self._usage
            out.append(self._event(finish))
        if self._usage_chunk is not None and self._usage_chunk.chunk is not None:
            out.append(self._event({**self._usage_chunk.chunk, **(self._identity or {}), "usage": self._usage}))
        if self._done is not None:
            out.append(self._done.raw)
        return b"".join(out)


def _meaningful(delta: dict) -> bool:
    return any(value not in (None, "", []) for value in delta.values())
