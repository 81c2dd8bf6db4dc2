"""The retrieval tool's loop in the OpenAI Responses API: :class:`ResponsesToolLoop` and
:class:`ResponsesSplicer` (the seam is :class:`~headroom.formats.base.ToolLoop`).

A private helper of :mod:`headroom.formats.responses`, which sets ``tool_loop``.

**Declared** as ``{"type": "function", "name", "description", "parameters"}`` (no ``strict``:
the schema has optional properties), appended last to a non-empty ``tools``.

**A turn** is a response's ``output`` items. They go back as *input* items unchanged
(reasoning items with their ``id`` and ``encrypted_content`` before the calls they led to,
as the API requires), except that with ``"store": false`` every ``id`` is left out: nothing
was persisted, and the API refuses an item id it cannot find ("Items are not persisted when
`store` is set to false"); the reasoning travels in ``encrypted_content``. The turn's
``message`` is ``{"id": response id, "store": the response's store, "items": [...]}``.

**The continuation** appends the turn's items and one ``function_call_output`` per answer
to ``input`` (a string ``input`` becomes a user message first). With ``previous_response_id``
the request keeps naming the same earlier response: the server holds what came before it,
and the appended items hold this turn, so the continuation's context is the first call's
plus the turn and the results, whatever ``store`` is. With ``conversation`` the server adds
every input and output item to the conversation itself, so the continuation sends only the
results. ``last``: ``tool_choice: "none"``.

**The id the client gets.** A stream opens with ``response.created`` before anyone knows a
retrieval will follow, and the ``openai`` SDK refuses a stream whose lifecycle events change
the response's id; so a spliced stream keeps the *first* response's id. A JSON answer takes
the *last* one's: the response the server holds with every turn of the loop in it, which a
later ``previous_response_id`` must name. A later request naming the first (a stream's) id
is pointed at the last one by :meth:`ResponsesToolLoop.restore`, from the record.

**Fingerprints** (what finds a record again): the sorted call ids of the client's calls in
the turn if it has any, else its message texts; both survive an SDK's re-serialising (ids
dropped, fields added). A turn the client got from a *stored* response is also found by its
response id, for requests that name it in ``previous_response_id`` instead of re-sending it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import ujson

from headroom.formats.base import (
    INPUT_SCHEMA,
    TOOL_DESCRIPTION,
    TOOL_NAME,
    ToolAnswer,
    ToolCall,
    Turn,
    arguments,
    data_of,
    dumps,
    split_events,
)

#: Items the client sends with the result of a call (never produced by the model).
RESULT_ITEMS = frozenset({
    "function_call_output", "custom_tool_call_output", "local_shell_call_output", "computer_call_output",
    "shell_call_output", "apply_patch_call_output", "mcp_approval_response",
})
#: Calls the client must answer; hosted tools (web and file search, code interpreter, image
#: generation, remote MCP) run at the provider and are no call of the client's.
CLIENT_CALLS = frozenset({
    "function_call", "custom_tool_call", "local_shell_call", "computer_call", "shell_call",
    "apply_patch_call", "mcp_approval_request",
})
#: Stream events that open a response, and those that end it.
OPENING = frozenset({"response.created", "response.in_progress", "response.queued"})
ENDING = frozenset({"response.completed", "response.incomplete", "response.failed"})
#: Fields of a merged answer taken from the last upstream response (the rest: the first's).
FROM_LAST = ("id", "status", "incomplete_details", "error", "completed_at")

# The common event, a delta of an item's text or arguments, is read without parsing its JSON:
# its name from the ``event:`` line and two numbers (a key cannot occur unescaped in a string).
_DELTA_EVENT = re.compile(rb"event: ?response\.[a-z_.]+\.delta\n")
_SEQUENCE = re.compile(rb'"sequence_number":(\d+)')
_OUTPUT_INDEX = re.compile(rb'"output_index":(\d+)')

_DEFINITION = dumps({"type": "function", "name": TOOL_NAME, "description": TOOL_DESCRIPTION,
                     "parameters": INPUT_SCHEMA})


# --- items ----------------------------------------------------------------------------------


def is_retrieval(item: Any) -> bool:
    return type(item) is dict and item.get("type") == "function_call" and item.get("name") == TOOL_NAME


def is_model_item(item: Any) -> bool:
    """Whether an input item is something the model produced (an assistant message, a
    reasoning item, a call …) rather than the user's, a system's or a call's result."""
    if type(item) is not dict:
        return False
    role = item.get("role")
    if role is not None:
        return role == "assistant"
    kind = item.get("type")
    return isinstance(kind, str) and kind not in RESULT_ITEMS and kind != "item_reference"


def run_end(items: list, start: int) -> int:
    """The index after the run of model items that starts at ``start``."""
    end = start
    while end < len(items) and is_model_item(items[end]):
        end += 1
    return end


def client_call_ids(items: Iterable[Any]) -> list[str]:
    """Call ids of the client's calls among ``items`` (the retrieval calls excepted)."""
    ids = []
    for item in items:
        if type(item) is dict and item.get("type") in CLIENT_CALLS and not is_retrieval(item):
            ref = item.get("call_id") or item.get("id")
            if isinstance(ref, str):
                ids.append(ref)
    return ids


def message_texts(items: Iterable[Any]) -> list[str]:
    """The text of each assistant message among ``items`` (its text parts joined by LF)."""
    texts = []
    for item in items:
        if type(item) is not dict or item.get("role") != "assistant":
            continue
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            parts = [p.get("text") or p.get("refusal") for p in content if type(p) is dict]
            texts.append("\n".join(p for p in parts if isinstance(p, str)))
    return texts


def fingerprint(items: list) -> str:
    """The turn's fingerprint: its client calls' ids, else its texts ("" when it has neither)."""
    ids = client_call_ids(items)
    if ids:
        return _digest("calls", sorted(ids))
    texts = [t for t in message_texts(items) if t]
    return _digest("text", texts) if texts else ""


def response_fingerprint(response_id: str) -> str:
    return _digest("response", [response_id])


def _digest(kind: str, parts: list[str]) -> str:
    return hashlib.sha256("\n".join([kind, *parts]).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def without_id(item: dict) -> dict:
    return {k: v for k, v in item.items() if k != "id"} if "id" in item else item


def result_item(answer: ToolAnswer) -> dict:
    """The ``function_call_output`` that answers one retrieval call."""
    return {"type": "function_call_output", "call_id": answer.call.id, "output": answer.text}


def input_items(body: dict) -> list:
    """``input`` as a list of items (a string is one user message)."""
    value = body.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return list(value) if isinstance(value, list) else []


def turn_of(items: list, response_id: Any, store: Any) -> Turn:
    calls = tuple(ToolCall(item.get("call_id") or "", TOOL_NAME, arguments(item.get("arguments")) or {})
                  for item in items if is_retrieval(item))
    return Turn(retrieval=calls, client_calls=len(client_call_ids(items)),
                message={"id": response_id, "store": store, "items": items})


def turn_items(message: Any) -> list:
    """The items of a turn's ``message`` (or of a visible turn: a list of items, or a response)."""
    if isinstance(message, dict):
        value = message.get("items", message.get("output"))
        return [i for i in value if type(i) is dict] if isinstance(value, list) else []
    return [i for i in message if type(i) is dict] if isinstance(message, list) else []


def sum_usage(usages: list[dict]) -> dict | None:
    """Usage objects added up: numbers summed, nested objects (``input_tokens_details`` …)
    summed key by key, anything else taken from the last."""
    if not usages:
        return None
    out: dict = {}
    for usage in usages:
        for key, value in usage.items():
            held = out.get(key)
            if isinstance(value, dict):
                out[key] = sum_usage([held, value] if isinstance(held, dict) else [value])
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and \
                    isinstance(held, (int, float)) and not isinstance(held, bool):
                out[key] = held + value
            else:
                out[key] = value
    return out


def without_our_tool(response: dict) -> dict:
    """A response object whose ``tools`` echo leaves out the tool Headroom declared."""
    tools = response.get("tools")
    if isinstance(tools, list) and any(_is_our_tool(t) for t in tools):
        return {**response, "tools": [t for t in tools if not _is_our_tool(t)]}
    return response


def _is_our_tool(tool: Any) -> bool:
    return type(tool) is dict and tool.get("type") == "function" and tool.get("name") == TOOL_NAME


def merge(answers: list[dict]) -> dict:
    """One response for the upstream responses of one request: every output item except the
    retrieval calls, in order; usage summed; the first's fields, with id, status and how it
    ended from the last (see the module docstring on the id)."""
    responses = [a for a in answers if isinstance(a, dict)]
    if not responses:
        return {}
    merged = dict(responses[0])
    last = responses[-1]
    for key in FROM_LAST:
        if key in last:
            merged[key] = last[key]
    merged["output"] = [item for r in responses for item in (r.get("output") or ()) if not is_retrieval(item)]
    usage = sum_usage([r["usage"] for r in responses if isinstance(r.get("usage"), dict)])
    if usage is not None or "usage" in merged:
        merged["usage"] = usage
    return without_our_tool(merged)


# --- the loop -------------------------------------------------------------------------------


class ResponsesToolLoop:
    """The Responses API's part of the retrieval loop (pure functions over bodies)."""

    def declare(self, body: dict, path: str = "", query: Mapping[str, list[str]] | None = None) -> bool:
        tools = body.get("tools")
        if type(tools) is not list or not tools or any(_is_our_tool(t) for t in tools):
            return False
        body["tools"] = [*tools, ujson.loads(_DEFINITION)]  # a fresh copy, the same bytes
        return True

    def turn(self, answer: dict) -> Turn:
        output = answer.get("output") if isinstance(answer, dict) else None
        items = [i for i in output if type(i) is dict] if isinstance(output, list) else []
        return turn_of(items, answer.get("id"), answer.get("store"))

    def continue_with(self, body: dict, turn: Turn, answers: list[ToolAnswer], last: bool) -> dict:
        out = dict(body)
        results = [result_item(a) for a in answers]
        if body.get("conversation"):
            out["input"] = results  # the conversation already holds the input and the turn
        else:
            items = turn_items(turn.message)
            if body.get("store") is False:
                items = [without_id(i) for i in items]
            out["input"] = [*input_items(body), *items, *results]
        if last:
            out["tool_choice"] = "none"
        return out

    def merge(self, answers: list[dict]) -> dict:
        return merge(answers)

    def splicer(self) -> ResponsesSplicer:
        return ResponsesSplicer()

    def turn_keys(self, body: dict) -> list[tuple[int, str]]:
        """Each run of model items in ``input`` by its fingerprint; with server-side state,
        the turn before ``input`` too: by ``previous_response_id``, or (``conversation``) by
        the call ids of the results ``input`` starts with."""
        keys: list[tuple[int, str]] = []
        value = body.get("input")
        items = value if isinstance(value, list) else []
        i = 0
        while i < len(items):
            if not is_model_item(items[i]):
                i += 1
                continue
            end = run_end(items, i)
            found = fingerprint(items[i:end])
            if found:
                keys.append((i, found))
            i = end
        previous = body.get("previous_response_id")
        if isinstance(previous, str) and previous:
            keys.append((0, response_fingerprint(previous)))
        elif body.get("conversation") and items and not is_model_item(items[0]):
            ids = [item["call_id"] for item in _leading_results(items) if isinstance(item.get("call_id"), str)]
            if ids:
                keys.append((0, _digest("calls", sorted(ids))))
        return keys

    def record(self, visible: Any, turns: list[Turn], answers: list[list[ToolAnswer]]
               ) -> tuple[str | tuple[str, ...], dict]:
        """Found by the visible turn's fingerprint and, for a stored response, by its id."""
        items = turn_items(visible)
        found = fingerprint(items)
        meta = visible if isinstance(visible, dict) else {}
        shown_id = meta.get("id")
        last_id = turns[-1].message.get("id") if turns and isinstance(turns[-1].message, dict) else None
        saved = {
            "fp": found, "id": shown_id, "last_id": last_id,
            "turns": [turn_items(t.message) for t in turns],
            "outputs": [[result_item(a) for a in round_answers] for round_answers in answers],
        }
        if isinstance(shown_id, str) and shown_id and meta.get("store") is not False:
            return (found, response_fingerprint(shown_id)), saved
        return found, saved

    def restore(self, body: dict, index: int, record: dict) -> None:
        turns = [t for t in record.get("turns") or () if isinstance(t, list)]
        if not turns:
            return
        outputs = [o for o in record.get("outputs") or () if isinstance(o, list)]
        pending = outputs[len(turns) - 1] if len(outputs) >= len(turns) else []
        value = body.get("input")
        items = list(value) if isinstance(value, list) else []
        if index < len(items) and is_model_item(items[index]):
            end = run_end(items, index)
            if fingerprint(items[index:end]) != record.get("fp"):
                return  # not the turn the record is of: leave the request as it is
            view = upstream_view(turns, outputs, body.get("store") is False)
            items[index:end] = view
            after = index + len(view)
        else:  # the turn is held by the server: previous_response_id or conversation
            previous = body.get("previous_response_id")
            if previous:
                if previous != record.get("id"):
                    return
                if record.get("last_id"):  # the response that holds every turn of the loop
                    body["previous_response_id"] = record["last_id"]
            elif not body.get("conversation"):
                return
            if isinstance(value, str):
                if not pending:
                    return
                items = input_items(body)
            after = 0
        _insert_results(items, after, pending, set(client_call_ids(turns[-1])))
        if isinstance(value, list) or items:
            body["input"] = items


def upstream_view(turns: list[list], outputs: list[list], strip_ids: bool) -> list:
    """What the upstream saw of a spliced answer: each turn, then the results of its
    retrieval calls, up to the last turn (whose results, if any, follow the client's own).
    A retrieval call without a result (it was never answered) is left out: the API refuses
    a call without its output."""
    view: list = []
    for n, items in enumerate(turns):
        answered = {o.get("call_id") for o in outputs[n]} if n < len(outputs) else set()
        for item in items:
            if is_retrieval(item) and item.get("call_id") not in answered:
                continue
            view.append(without_id(item) if strip_ids else item)
        if n < len(turns) - 1 and n < len(outputs):
            view += outputs[n]
    return view


def _leading_results(items: list) -> list[dict]:
    out = []
    for item in items:
        if type(item) is not dict or item.get("type") not in RESULT_ITEMS:
            break
        out.append(item)
    return out


def _insert_results(items: list, at: int, pending: list, client_ids: set[str]) -> None:
    """Put the retrieval results right after the client's own results for that turn (the
    results that follow ``at``), once."""
    present = {item.get("call_id") for item in items if type(item) is dict and item.get("type") in RESULT_ITEMS}
    pending = [p for p in pending if type(p) is dict and p.get("call_id") not in present]
    if not pending:
        return
    position = at
    for j in range(at, len(items)):
        item = items[j]
        if type(item) is not dict or item.get("type") not in RESULT_ITEMS:
            break
        if item.get("call_id") in client_ids:
            position = j + 1
    items[position:position] = pending


# --- streams --------------------------------------------------------------------------------


def event_bytes(obj: dict) -> bytes:
    return b"event: " + str(obj.get("type")).encode() + b"\ndata: " + dumps(obj) + b"\n\n"


class ResponsesSplicer:
    """One client stream over the upstream streams of one request.

    Relayed as they arrive, with ``sequence_number`` counting every event the client gets
    and ``output_index`` counting the items it gets (both rewritten only where they differ
    from the upstream's, so a stream that retrieves nothing passes byte for byte). Held
    back: a retrieval call's events (its ``output_item.added`` names the tool), each
    upstream response's end (``response.completed``, ``.incomplete``, ``.failed``), and a
    continuation's ``response.created`` / ``.in_progress``. :meth:`close` sends one end
    with the merged response: the first response's id, every item the client saw, usage
    summed."""

    def __init__(self) -> None:
        self._seq = 0  # the next sequence_number the client gets
        self._next_index = 0  # the next output_index the client gets
        self._round = 0
        self._first: dict | None = None  # the response of the first response.created
        self._ended: list[dict] = []  # the final response object of each earlier round
        self._new_round()

    def _new_round(self) -> None:
        self._opened: dict | None = None  # this round's response (response.created)
        self._indices: dict[int, int] = {}  # this round's output_index -> the client's
        self._held: set[int] = set()  # this round's retrieval calls (upstream output_index)
        self._done: dict[int, dict] = {}  # this round's finished items by upstream output_index
        self._end: dict | None = None  # this round's ending event
        self._end_bytes = b""

    def feed(self, events: bytes) -> bytes:
        if b"\r" in events:  # the general case; most streams end lines with LF only
            pieces = split_events(events)
        else:
            pieces = [p + b"\n\n" for p in events.split(b"\n\n")]
            last = pieces.pop()[:-2]
            if last:  # not an event's end (never from EventBuffer); passed on as it came
                pieces.append(last)
        return b"".join(self._fast(event) for event in pieces)

    def _fast(self, event: bytes) -> bytes:
        """A delta that goes out as it came (its item is the client's, nothing renumbered), else
        :meth:`_relay`."""
        if _DELTA_EVENT.match(event):
            index, seq = _OUTPUT_INDEX.search(event), _SEQUENCE.search(event)
            if index is not None and seq is not None:
                upstream = int(index.group(1))
                if upstream in self._held:
                    return b""
                if self._indices.get(upstream) == upstream and int(seq.group(1)) == self._seq:
                    self._seq += 1
                    return event
        return self._relay(event)

    def _relay(self, event: bytes) -> bytes:
        data = data_of(event)
        if not data:
            return event  # a comment, a keep-alive
        try:
            obj = ujson.loads(data)
        except ValueError:
            return event
        if type(obj) is not dict:
            return event
        kind = obj.get("type")
        if kind in OPENING:
            response = obj.get("response")
            if isinstance(response, dict):
                self._opened = self._opened or response
                self._first = self._first or response
                if self._round == 0 and response is not (stripped := without_our_tool(response)):
                    obj["response"] = stripped
                    return self._send(event, obj, True)
            return b"" if self._round else self._send(event, obj, False)
        if kind in ENDING:
            self._end, self._end_bytes = obj, event
            return b""
        changed = False
        index = obj.get("output_index")
        if type(index) is int:
            item = obj.get("item")
            if kind == "response.output_item.added" and is_retrieval(item):
                self._held.add(index)
            if kind == "response.output_item.done" and type(item) is dict:
                self._done[index] = item
            if index in self._held:
                return b""
            mapped = self._indices.get(index)
            if mapped is None:
                mapped = self._indices[index] = self._next_index
                self._next_index += 1
            if mapped != index:
                obj["output_index"] = mapped
                changed = True
        return self._send(event, obj, changed)

    def _send(self, event: bytes, obj: dict, changed: bool) -> bytes:
        if "sequence_number" in obj:
            if obj["sequence_number"] != self._seq:
                obj["sequence_number"] = self._seq
                changed = True
            self._seq += 1
        return event_bytes(obj) if changed else event

    def _round_response(self) -> dict:
        """This round's response: its end's, else what its events showed."""
        ended = self._end.get("response") if self._end else None
        if isinstance(ended, dict) and isinstance(ended.get("output"), list):
            return ended
        opened = self._opened or {}
        return {**opened, "output": [self._done[i] for i in sorted(self._done)]}

    def turn(self) -> Turn:
        response = self._round_response()
        return turn_of([i for i in response["output"] if type(i) is dict], response.get("id"),
                       response.get("store"))

    def resume(self) -> None:
        self._ended.append(self._round_response())
        self._round += 1
        self._new_round()

    def _merged(self) -> dict:
        merged = merge([*self._ended, self._round_response()])
        if self._first is not None:  # the stream's identity: the id its response.created gave
            for key in ("id", "created_at"):
                if key in self._first:
                    merged[key] = self._first[key]
        return merged

    def close(self) -> bytes:
        if self._end is None:
            return b""  # the stream broke off or failed: nothing to end
        if self._round == 0 and not self._held:  # nothing spliced: the upstream's own end
            response = self._end.get("response")
            if isinstance(response, dict) and response is not (stripped := without_our_tool(response)):
                self._end["response"] = stripped
                return self._send(self._end_bytes, self._end, True)
            return self._send(self._end_bytes, self._end, False)
        end = {"type": self._end.get("type"), "sequence_number": self._seq, "response": self._merged()}
        self._seq += 1
        return event_bytes(end)

    def visible(self) -> Any:
        merged = self._merged()
        return {"id": merged.get("id"), "store": merged.get("store"), "items": merged.get("output") or []}

    @property
    def usage(self) -> dict | None:
        return sum_usage([r["usage"] for r in (*self._ended, self._round_response())
                          if isinstance(r.get("usage"), dict)])
