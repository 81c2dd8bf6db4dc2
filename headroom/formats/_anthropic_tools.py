"""The retrieval tool in Anthropic Messages (:class:`~headroom.formats.base.ToolLoop`).

Imported only by :mod:`headroom.formats.anthropic`. A call is a ``tool_use`` content block
named ``headroom_retrieve``; its answer goes back as a ``tool_result`` block (``is_error``
for a miss) in a user message after the model's whole turn, thinking blocks and their
signatures included, exactly as the API returned them (the API refuses a tool-use turn whose
thinking was changed or dropped). With extended thinking only ``tool_choice`` ``auto`` or
``none`` is allowed, so the last round asks with ``{"type": "none"}``, which the API accepts
either way.

A stream (:class:`AnthropicSplicer`) is relayed event by event; only the retrieval call's
own block events and the end of the message (``message_delta``, ``message_stop``) are held.
A continuation's ``message_start`` is dropped (its usage summed), its blocks are renumbered
to follow the ones the client has, and one ``message_delta`` closes the message with the
last stop reason and the usage summed over every upstream call.
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
    messages_of,
    split_events,
)

#: The tool as Anthropic declares tools; one object, so its bytes are the same on every request.
DEFINITION: dict[str, Any] = {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": INPUT_SCHEMA}

_NAME_BYTES = TOOL_NAME.encode()
_INDEX = re.compile(rb'"index"\s*:\s*(\d+)')
_TYPE = re.compile(rb'"type"\s*:\s*"([a-z_]+)"')
_EVENT_LINE = re.compile(rb"event:[ \t]*([a-z_]+)")


# --- answers ------------------------------------------------------------------------------


def is_retrieval(block: Any) -> bool:
    return type(block) is dict and block.get("type") == "tool_use" and block.get("name") == TOOL_NAME


def request_block(block: dict) -> dict:
    """A content block of an answer as a request carries it back: fields that are null dropped
    (``citations: null``), everything else (a thinking block's signature) exactly as received."""
    return {key: value for key, value in block.items() if value is not None}


def turn_of(content: Any) -> Turn:
    """The turn made by an answer's content blocks, in the order the API returned them."""
    blocks = [request_block(block) for block in content if type(block) is dict] if type(content) is list else []
    retrieval = tuple(ToolCall(str(block.get("id") or ""), TOOL_NAME,
                               block["input"] if type(block.get("input")) is dict else {})
                      for block in blocks if is_retrieval(block))
    client_calls = sum(1 for block in blocks if block.get("type") == "tool_use" and not is_retrieval(block))
    return Turn(retrieval, client_calls, {"role": "assistant", "content": blocks})


def result_block(answer: ToolAnswer) -> dict:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": answer.call.id, "content": answer.text}
    if answer.error:
        block["is_error"] = True
    return block


def summed_usage(usages: list[dict]) -> dict:
    """Usage objects added up: counts summed (nested ones too: ``cache_creation``), other
    values (``service_tier``) from the last that has them."""
    total: dict[str, Any] = {}
    for usage in usages:
        for key, value in usage.items():
            if value is None:
                total.setdefault(key, None)
            elif type(value) is int and type(total.get(key, 0)) is int:
                total[key] = total.get(key, 0) + value
            elif type(value) is dict and type(total.get(key, {})) is dict:
                total[key] = summed_usage([total.get(key) or {}, value])
            else:
                total[key] = value
    return total


def merged(answers: list[dict]) -> dict:
    """One message for the upstream answers of one request (see :meth:`AnthropicToolLoop.merge`)."""
    first, last = answers[0], answers[-1]
    content = [block for answer in answers for block in (answer.get("content") or ())
               if not is_retrieval(block)]
    stop_reason = last.get("stop_reason")
    if stop_reason == "tool_use" and not any(type(b) is dict and b.get("type") == "tool_use" for b in content):
        stop_reason = "end_turn"  # only retrieval calls were left, and the client never sees them
    out = dict(first)
    out["content"] = content
    out["stop_reason"] = stop_reason
    out["stop_sequence"] = last.get("stop_sequence")
    usages = [answer["usage"] for answer in answers if type(answer.get("usage")) is dict]
    if usages:
        out["usage"] = summed_usage(usages)
    return out


# --- putting a turn back ------------------------------------------------------------------


def fingerprint(message: Any) -> str:
    """What identifies a model turn across an SDK's re-serialising: its texts and its tool
    calls' ids (not thinking, not null fields, not key order)."""
    texts: list[str] = []
    ids: list[str] = []
    content = message.get("content") if type(message) is dict else None
    if type(content) is str:
        texts.append(content)
    elif type(content) is list:
        for block in content:
            if type(block) is not dict:
                continue
            if block.get("type") == "text" and type(block.get("text")) is str:
                texts.append(block["text"])
            elif block.get("type") == "tool_use" and type(block.get("id")) is str:
                ids.append(block["id"])
    digest = hashlib.sha256("\n".join(texts).encode("utf-8", "surrogatepass"))
    digest.update(b"\x00" + "\n".join(ids).encode())
    return digest.hexdigest()[:32]


def restored(messages: list, index: int, record: dict) -> list | None:
    """``messages`` with the turn at ``index`` replaced by what the upstream saw, or None when
    the record does not fit this conversation (then it passes as the client sent it).

    ``record["turns"]`` are the model's turns in request shape; ``record["results"]`` the
    retrieval results after each of them. One result list per turn but the last: the turns
    were merged into one answer. As many as turns: the last turn also called the client's own
    tools (or asked past the limit), and its results go into the client's next message, right
    after the client's own tool results."""
    turns, results = record.get("turns"), record.get("results")
    if type(turns) is not list or type(results) is not list or not turns or len(results) not in (len(turns) - 1,
                                                                                                len(turns)):
        return None
    replacement: list = []
    for k, turn in enumerate(turns):
        replacement.append(turn)
        if k < len(turns) - 1:
            replacement.append({"role": "user", "content": results[k]})
    tail = messages[index + 1:]
    if len(results) == len(turns):
        following = tail[0] if tail else None
        if type(following) is not dict or following.get("role") != "user":
            return None  # the model's calls would go unanswered: leave the conversation as it is
        content = following.get("content")
        parts = list(content) if type(content) is list else ([{"type": "text", "text": content}]
                                                            if type(content) is str and content else [])
        at = 0
        while at < len(parts) and type(parts[at]) is dict and parts[at].get("type") == "tool_result":
            at += 1
        parts[at:at] = results[-1]
        tail = [{**following, "content": parts}, *tail[1:]]
    return [*messages[:index], *replacement, *tail]


# --- the tool loop ------------------------------------------------------------------------


class AnthropicToolLoop:
    """:class:`~headroom.formats.base.ToolLoop` for Anthropic Messages."""

    def declare(self, body: dict, path: str = "", query: Mapping[str, list[str]] | None = None) -> bool:
        tools = body.get("tools")
        if type(tools) is not list or not tools:
            return False
        if any(type(tool) is dict and tool.get("name") == TOOL_NAME for tool in tools):
            return False
        body["tools"] = [*tools, DEFINITION]
        return True

    def turn(self, answer: dict) -> Turn:
        return turn_of(answer.get("content"))

    def continue_with(self, body: dict, turn: Turn, answers: list[ToolAnswer], last: bool) -> dict:
        out = dict(body)
        out["messages"] = [*messages_of(body), turn.message,
                           {"role": "user", "content": [result_block(answer) for answer in answers]}]
        if last:
            out["tool_choice"] = {"type": "none"}
        return out

    def merge(self, answers: list[dict]) -> dict:
        """First id and model, content in order without retrieval calls, last stop reason and
        stop sequence, usage summed."""
        return merged(answers)

    def splicer(self) -> AnthropicSplicer:
        return AnthropicSplicer()

    def turn_keys(self, body: dict) -> list[tuple[int, str]]:
        return [(i, fingerprint(message)) for i, message in enumerate(messages_of(body))
                if type(message) is dict and message.get("role") == "assistant"]

    def record(self, visible: Any, turns: list[Turn], answers: list[list[ToolAnswer]]) -> tuple[str, dict]:
        return fingerprint(visible), {
            "turns": [turn.message for turn in turns],
            "results": [[result_block(answer) for answer in round_] for round_ in answers],
        }

    def restore(self, body: dict, index: int, record: dict) -> None:
        messages = messages_of(body)
        if not 0 <= index < len(messages):
            return
        new = restored(messages, index, record)
        if new is not None:
            body["messages"] = new


# --- streams ------------------------------------------------------------------------------


def _event(kind: str, payload: dict) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + dumps(payload) + b"\n\n"


def _dict(value: Any) -> dict:
    return value if type(value) is dict else {}


def _load(event: bytes) -> dict:
    data = data_of(event)
    try:
        value = ujson.loads(data) if data else None
    except ValueError:
        return {}
    return value if type(value) is dict else {}


_DELTA_FIELDS = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}


class _Block:
    """One content block of an upstream stream, built up from its events."""

    __slots__ = ("block", "json", "parts")

    def __init__(self, block: dict) -> None:
        self.block = request_block(block)
        self.parts: dict[str, list[str]] = {}  # text, thinking, signature: the deltas, in order
        self.json: list[str] = []  # a tool call's input, as partial JSON

    def add(self, delta: dict) -> None:
        kind = delta.get("type")
        field = _DELTA_FIELDS.get(kind) if type(kind) is str else None
        if field is not None:
            self.parts.setdefault(field, []).append(str(delta.get(field) or ""))
        elif kind == "input_json_delta":
            self.json.append(str(delta.get("partial_json") or ""))
        elif kind == "citations_delta" and type(delta.get("citation")) is dict:
            self.block.setdefault("citations", []).append(delta["citation"])

    def finished(self) -> dict:
        block = self.block
        for field, parts in self.parts.items():
            block[field] = str(block.get(field) or "") + "".join(parts)
        if self.json or block.get("type") in ("tool_use", "server_tool_use"):
            text = "".join(self.json)
            try:
                value = ujson.loads(text) if text.strip() else block.get("input")
            except ValueError:
                value = {}
            block["input"] = value if type(value) is dict else {}
        return block


def _blocks(events: list[bytes]) -> dict[int, dict]:
    """The content blocks an upstream stream's block events make, by their index there."""
    built: dict[int, _Block] = {}
    for chunk in events:
        for event in split_events(chunk):
            payload = _load(event)
            index = payload.get("index")
            if type(index) is not int:
                continue
            if payload.get("type") == "content_block_start" and type(payload.get("content_block")) is dict:
                built[index] = _Block(payload["content_block"])
            elif payload.get("type") == "content_block_delta" and index in built:
                built[index].add(_dict(payload.get("delta")))
    return {index: block.finished() for index, block in built.items()}


class AnthropicSplicer:
    """:class:`~headroom.formats.base.Splicer` for Anthropic Messages streams.

    Cheap on the way: events pass as they come (a batch of deltas of the first stream is not
    even split), and what a turn needs (its blocks, thinking and signatures included) is read
    from the stream's block events only once the stream has ended (:meth:`turn`)."""

    def __init__(self) -> None:
        self._sent = 0  # content blocks the client has been given
        self._streams = 0  # upstream streams begun
        self._index: dict[int, int | None] = {}  # this stream's block index -> the client's (None: held)
        self._identity = True  # so far every block keeps its index: a batch of deltas passes as it is
        self._events: list[bytes] = []  # this stream's block events, as received
        self._visible: list[dict] = []  # the blocks the client got, in request shape (up to the last turn())
        self._usages: list[dict] = []  # per upstream stream, its latest figures
        self._end: list[bytes] = []  # this stream's held message_delta / message_stop events
        self._delta: dict = {}  # the latest message_delta
        self._client_calls = 0  # in the current stream
        self._retrieval_left = False  # the last stream ended with retrieval calls only

    # -- relaying --------------------------------------------------------------------------

    def feed(self, events: bytes) -> bytes:
        if self._identity and b"content_block_start" not in events and b"message_" not in events:
            self._events.append(events)  # deltas and stops of blocks the client has, with their indices
            return events
        out: list[bytes] = []
        for event in split_events(events):
            sent = self._one(event)
            if sent:
                out.append(sent)
        return b"".join(out)

    def _one(self, event: bytes) -> bytes:
        found = _EVENT_LINE.match(event) or _TYPE.search(event)  # Anthropic names every event first
        kind = found.group(1) if found else b""
        if kind in (b"content_block_delta", b"content_block_stop"):
            self._events.append(event)
            return self._block_event(event)
        if kind == b"content_block_start":
            self._events.append(event)
            return self._block_start(event)
        if kind == b"message_start":
            return self._message_start(event)
        if kind == b"message_delta":
            payload = _load(event)
            self._delta = payload
            usage = payload.get("usage")
            if type(usage) is dict and self._usages:
                self._usages[-1] = {**self._usages[-1], **{k: v for k, v in usage.items() if v is not None}}
            self._end.append(event)
            return b""
        if kind == b"message_stop":
            self._end.append(event)
            return b""
        return event  # ping, error and anything new pass as they come

    def _message_start(self, event: bytes) -> bytes:
        message = _dict(_load(event).get("message"))
        self._usages.append({k: v for k, v in _dict(message.get("usage")).items() if v is not None})
        self._streams += 1
        self._index, self._events, self._end, self._client_calls = {}, [], [], 0
        if self._streams == 1:
            return event
        self._identity = False
        return b""  # a continuation: the client has its message already

    def _block_start(self, event: bytes) -> bytes:
        found = _INDEX.search(event)
        if found is None:
            return event
        index = int(found.group(1))
        if _NAME_BYTES in event and is_retrieval(_dict(_load(event).get("content_block"))):
            self._index[index] = None
            self._identity = False
            return b""
        if b'"tool_use"' in event:
            self._client_calls += 1
        self._index[index] = self._sent
        self._identity = self._identity and index == self._sent
        self._sent += 1
        return self._renumbered(event, index)

    def _block_event(self, event: bytes) -> bytes:
        found = _INDEX.search(event)
        index = int(found.group(1)) if found else None
        if index is None or index not in self._index:
            return event
        if self._index[index] is None:
            return b""  # the retrieval call's own events: the client never sees them
        return self._renumbered(event, index)

    def _renumbered(self, event: bytes, index: int) -> bytes:
        target = self._index.get(index)
        if target is None or target == index:
            return event
        return _INDEX.sub(b'"index":' + str(target).encode(), event, count=1)

    # -- between and after the upstream calls ------------------------------------------------

    def turn(self) -> Turn:
        if self._streams <= 1 and self._identity:
            # No retrieval call, and the answer's only upstream call: nothing will be appended
            # or recorded, so its blocks are not read back (a long answer's end would wait).
            self._retrieval_left = False
            return Turn((), self._client_calls, None)
        blocks = _blocks(self._events)
        turn = turn_of([blocks[i] for i in sorted(blocks)])
        self._visible += [blocks[i] for i in sorted(blocks) if self._index.get(i) is not None]
        self._retrieval_left = bool(turn.retrieval) and not turn.client_calls
        return turn

    def resume(self) -> None:
        self._end = []

    def close(self) -> bytes:
        if self._streams <= 1 and not self._retrieval_left:
            return b"".join(self._end)  # one upstream call: its own end, byte for byte
        delta = dict(self._delta) if self._delta else {"type": "message_delta"}
        inner = dict(_dict(delta.get("delta")))
        if self._retrieval_left and inner.get("stop_reason") == "tool_use" and not self._client_calls:
            inner["stop_reason"] = "end_turn"
        delta["delta"] = inner
        delta["usage"] = self.usage or {}
        return _event("message_delta", delta) + _event("message_stop", {"type": "message_stop"})

    def visible(self) -> Any:
        """The blocks the client got from every stream whose :meth:`turn` was read (the loop
        reads each at its end)."""
        return {"role": "assistant", "content": list(self._visible)}

    @property
    def usage(self) -> dict | None:
        return summed_usage(self._usages) if self._usages else None
