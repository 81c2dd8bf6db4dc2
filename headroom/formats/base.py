"""What every wire format provides, as one typed Protocol, and the pieces formats share.

A *format* is one request/response dialect an LLM API speaks: Anthropic Messages, OpenAI
Chat Completions, OpenAI Responses, Google Gemini. Everything that differs between them —
routes and upstream, where the model and the stream flag are, the caller's credential, where
tool outputs sit and how to rewrite them, usage, native errors, how a stream ends, the
context-window rules, rate-limit headers — is behind :class:`Format`, so the proxy and the
pipeline read one request's path without ever asking which format it is. A request's format
is looked up once, when it arrives (:func:`headroom.formats.format_for_path`), and travels
on its :class:`~headroom.proxy.exchange.Exchange`.

Layering: this package imports nothing from ``headroom.proxy`` or ``headroom.transforms``
(the transforms import it), only :mod:`headroom.pricing` and :mod:`headroom.savings`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import ujson

from headroom.pricing import Usage

# Location of a text inside a body: (message index, content index, part index), where the
# meaning of the last two depends on the format; None means "the whole field".
Path = tuple[int, "int | None", "int | None"]


@dataclass(frozen=True)
class Block:
    """One tool output the pipeline may compress."""

    path: Path
    text: str
    tool_name: str | None
    tool_input: dict | None = None  # the call's arguments (``Bash``'s command, …)
    #: The text is the compact JSON of an object or array that the format puts back as a
    #: value (a Gemini ``functionResponse``'s): only JSON of the same shape may replace it.
    structured: bool = False


@dataclass(frozen=True)
class Route:
    """A POST route that carries an LLM call: the path as received, the path upstream, and
    the route's name (unique in the app)."""

    path: str
    upstream_path: str
    name: str


@dataclass(frozen=True)
class Refusal:
    """A request a format refuses before it goes anywhere: status, message, error code."""

    status: int
    message: str
    code: str | None = None


class Format(Protocol):
    """One wire format: data (read-only attributes: plain class attributes in a format's class)
    plus pure functions over bodies and bytes."""

    #: The format's name: ``"anthropic"``, ``"chat"``, ``"responses"``, ``"gemini"``.
    @property
    def name(self) -> str: ...
    #: Who runs the API: the ``provider`` label of stats, metrics and the request log.
    @property
    def provider(self) -> str: ...
    #: The :class:`~headroom.config.ProxyConfig` field holding the upstream's base URL.
    @property
    def upstream_option(self) -> str: ...
    #: Key into ``context_windows.json``'s per-provider defaults; ``default_window`` if absent.
    @property
    def window_family(self) -> str: ...
    @property
    def default_window(self) -> int: ...
    #: The body field holding the conversation (``messages``, ``input``, ``contents``).
    @property
    def conversation_field(self) -> str: ...
    #: Static POST routes that carry an LLM call.
    @property
    def routes(self) -> tuple[Route, ...]: ...
    #: Pass-through prefixes beyond ``/v1/``: (prefix as received, prefix upstream, route name).
    @property
    def passthrough_prefixes(self) -> tuple[tuple[str, str, str], ...]: ...
    #: Request headers that carry the caller's API key, in hashing order.
    @property
    def credential_headers(self) -> tuple[str, ...]: ...
    #: The error code of a refusal for an exhausted budget.
    @property
    def budget_code(self) -> str: ...

    # -- which requests are this format's ------------------------------------------------
    def claims_path(self, path: str) -> bool: ...
    def claims_headers(self, headers: Mapping[str, str] | Iterable[str]) -> bool: ...
    def is_llm_call(self, method: str, path: str) -> bool: ...
    def refuse_other_method(self, method: str, path: str, headers: Mapping[str, str]) -> Refusal | None: ...

    # -- the request -----------------------------------------------------------------------
    def query_credentials(self, query: Mapping[str, list[str]]) -> list[tuple[str, str]]: ...
    def cache_query(self, query: Mapping[str, list[str]], query_string: str) -> str: ...
    def model_and_stream(self, body: dict, path: str, query: Mapping[str, list[str]]) -> tuple[str | None, bool]: ...
    def logged_messages(self, body: dict) -> list | str | None: ...
    def prepare(self, body: dict) -> bool: ...

    # -- tool outputs and the question (the pipeline's view) --------------------------------
    def has_block(self, body: dict, min_chars: int) -> bool: ...
    def blocks(self, body: dict, min_chars: int = 0) -> list[Block]: ...
    def user_texts(self, body: dict) -> Iterator[str]: ...
    def rewrite(self, body: dict, new_texts: dict[Path, str]) -> dict: ...
    def conversation(self, body: dict) -> list: ...
    def fixed_parts(self, body: dict) -> list: ...
    def cache_ttls(self, body: dict, paths: list[Path]) -> dict: ...

    # -- context-window fitting -------------------------------------------------------------
    def fittable(self, body: dict) -> bool: ...
    def window_chars(self, body: dict) -> int: ...
    def units(self, messages: list) -> list[list[int]]: ...
    def max_output_tokens(self, body: dict) -> int | None: ...

    # -- the answer -------------------------------------------------------------------------
    @property
    def usage_marker(self) -> re.Pattern[bytes]: ...
    def reported_usage(self, body: object) -> dict | None: ...
    def usage(self, reported: dict) -> Usage: ...
    def stream_usage(self, event: dict, reported: dict) -> tuple[dict | None, bool]: ...
    def error_body(self, status: int, message: str, code: str | None = None) -> bytes: ...
    def stream_error_event(self, message: str, last_sent: bytes = b"") -> bytes: ...
    def stream_failed(self, last_events: bytes) -> bool: ...
    def rate_limit_headers(self, kind: str, limit: int, remaining: int, reset_seconds: float) -> dict[str, str]: ...

    # -- the retrieval tool -------------------------------------------------------------------
    #: None until the format supports the retrieval loop (its requests then pass as before).
    @property
    def tool_loop(self) -> ToolLoop | None: ...



# --- the retrieval tool's loop (headroom.proxy.tool_loop) ----------------------------------
#
# When the model calls ``headroom_retrieve`` (:mod:`headroom.transforms.retrieval`), the proxy
# answers the call itself and asks the upstream again, and the client gets one ordinary
# answer. What differs per format (how the tool is declared, how a call looks in an answer
# and in a stream, how a conversation continues, how answers merge, how a spliced turn is
# put back on a later request) is behind :class:`ToolLoop`; the loop itself names no format.


#: The retrieval tool's definition: one source for every format's declaration (each in its own
#: shape), ``headroom mcp`` and :mod:`headroom.transforms.retrieval`, which answers the calls.
TOOL_NAME = "headroom_retrieve"

TOOL_DESCRIPTION = (
    "Get back content that Headroom left out of a tool result to save context. A note such as "
    '[headroom: 370 of 400 lines omitted (16-385); headroom_retrieve key=3f9c0a1b2c3d4e5f lines="16-385" or '
    'query="…"] marks where, names the lines left out where it can, and shows the call. '
    "Prefer the smallest answer that will do: `query` returns only the lines containing every word of it "
    "(case-insensitive), numbered, with 2 lines of context; `lines` returns a line or range of the original "
    "(\"120\" or \"120-245\"), numbered; with neither, the whole original comes back."
)

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "key": {
            "type": "string",
            "description": "The key named in the [headroom: … key=K …] note (16 hex digits).",
        },
        "lines": {
            "type": "string",
            "description": 'Optional: a line number ("120") or an inclusive range ("120-245") of the original, '
                           "numbered from 1.",
        },
        "query": {
            "type": "string",
            "description": "Optional: text to look for. Lines holding every word of it (case-insensitive) come "
                           "back with their line numbers and 2 lines of context. With `lines`, only that range "
                           "is searched.",
        },
    },
    "required": ["key"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class ToolCall:
    """One tool call in a model's answer."""

    id: str  # the call's id as the format carries it ("" where the format has none)
    name: str
    arguments: dict  # {} when absent or not a JSON object


@dataclass(frozen=True)
class ToolAnswer:
    """The proxy's answer to one retrieval call: the text the model reads, and whether it is a
    tool error (expired key, another caller's key, store down: the model can act on it; the
    request never fails because of it)."""

    call: ToolCall
    text: str
    error: bool = False


@dataclass(frozen=True)
class Turn:
    """One upstream answer, as the loop needs it."""

    retrieval: tuple[ToolCall, ...]  # calls to headroom_retrieve, in order
    client_calls: int  # calls to the client's own tools in the same answer
    #: The model's turn in this format's *request* shape, exactly what ``continue_with``
    #: appends: every part the provider requires back (thinking blocks with their signatures,
    #: reasoning items), every call including the retrieval ones. JSON-able. A splicer may
    #: leave it None for the turn of an answer's only upstream stream when it made no
    #: retrieval call (nothing is then appended or recorded; reading a long stream back
    #: would only delay its end).
    message: Any


class Splicer(Protocol):
    """Relays one client request's stream across the upstream calls the loop makes for it
    (one per client request). Events go out as they arrive; only the retrieval calls' own
    events and the end of the answer (stop reason, final usage, the closing events) are held
    back, and a continuation's events are renumbered to continue the first stream (one
    ``message_start``, block indices continuing; one id and choice; ``output_index`` and
    ``sequence_number`` continuing and one ``response.completed``; Gemini's chunk shape)."""

    def feed(self, events: bytes) -> bytes:
        """Complete SSE events of the current upstream stream (as
        :class:`~headroom.proxy.sse.EventBuffer` hands them out) -> the bytes to send the
        client now (``b""`` when all are held)."""
        ...

    def turn(self) -> Turn:
        """The current upstream stream has ended: the turn it made."""
        ...

    def resume(self) -> None:
        """The next upstream stream continues this answer (the loop answered the retrieval calls)."""
        ...

    def close(self) -> bytes:
        """Nothing follows: the held-back end of the answer, with usage summed over every
        upstream call, and the client's calls only."""
        ...

    def visible(self) -> Any:
        """The model's turn as the client got it, in request shape (for :meth:`ToolLoop.record`)."""
        ...

    @property
    def usage(self) -> dict | None:
        """The usage reported so far, summed over the upstream calls (the format's shape)."""
        ...


class ToolLoop(Protocol):
    """What a format does for the retrieval tool. Pure functions over bodies; the loop
    (:mod:`headroom.proxy.tool_loop`) does the I/O."""

    def declare(self, body: dict, path: str = "", query: Mapping[str, list[str]] | None = None) -> bool:
        """Append the retrieval tool's definition to a request that already declares tools
        (a non-empty tool list), with the same bytes every time; False (body untouched) when it
        declares none or already has it, or when the loop could not read the answer it asks
        for. ``path`` and ``query``: the request's upstream path and query, as
        :meth:`Format.model_and_stream` gets them (Gemini's ``streamGenerateContent`` without
        ``alt=sse`` answers a JSON array of chunks, which the loop does not read: declared
        there, a retrieval call would reach the client)."""
        ...

    def turn(self, answer: dict) -> Turn:
        """The turn a JSON answer made."""
        ...

    def continue_with(self, body: dict, turn: Turn, answers: list[ToolAnswer], last: bool) -> dict:
        """The next upstream request: ``body`` with the model's turn and the tool results
        appended in this format's shape. ``last``: the upstream is asked to answer without
        calling a tool (``--max-retrievals`` reached); the tool definitions stay as they were."""
        ...

    def merge(self, answers: list[dict]) -> dict:
        """The one JSON answer the client gets for the upstream answers of one request:
        retrieval calls removed, content concatenated in order, usage summed, identity of the
        first (or as the format requires), stop reason of the last."""
        ...

    def splicer(self) -> Splicer:
        ...

    def turn_keys(self, body: dict) -> list[tuple[int, str]]:
        """(index in the conversation, fingerprint) of each model turn of a request that may
        be one the client got spliced or stripped; the fingerprint survives an SDK's
        re-serialising (call ids and texts only)."""
        ...

    def record(self, visible: Any, turns: list[Turn], answers: list[list[ToolAnswer]]
               ) -> tuple[str | tuple[str, ...], dict]:
        """What a later request needs to put the upstream's view back: (fingerprint of
        ``visible``, the model turn as the client got it; a JSON-able record of ``turns`` and
        ``answers``, what the upstream saw). The fingerprint may be a tuple of several: the
        record is stored under each (a Responses turn is found by its texts when the client
        re-sends it, and by its response id when a later request names it in
        ``previous_response_id``)."""
        ...

    def restore(self, body: dict, index: int, record: dict) -> None:
        """Where the conversation holds the turn the client got (``index``, from
        :meth:`turn_keys`), put back what the upstream saw (the model's turns and the
        retrieval results, in the same place with the same bytes), so the prefix the upstream
        sees is the one it saw before."""
        ...

# --- shared helpers ------------------------------------------------------------------------


def dumps(value) -> bytes:
    """JSON as the providers send it: UTF-8, slashes unescaped."""
    return ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False).encode()


def iso_after(seconds_from_now: float) -> str:
    """An RFC 3339 UTC time ``seconds_from_now`` from now, to the second."""
    moment = datetime.now(timezone.utc) + timedelta(seconds=max(0.0, seconds_from_now))
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


#: A usage *object* (not "usage": null, which OpenAI sends on every chunk when asked).
USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


def top_level_usage(body) -> dict | None:
    """``usage`` of a JSON answer (any JSON value)."""
    reported = body.get("usage") if isinstance(body, dict) else None
    return reported if isinstance(reported, dict) else None


def max_output_tokens(body: dict) -> int | None:
    """The output limit a request sets (``max_tokens``, ``max_completion_tokens`` or
    ``max_output_tokens``, whichever the format uses), or None."""
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def messages_of(body: dict) -> list:
    messages = body.get("messages")
    return messages if isinstance(messages, list) else []


def arguments(raw) -> dict | None:
    """A call's arguments as a dict: a dict, or a small JSON string of one (else None)."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and len(raw) < 4096:
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
    return None


def content_chars(messages: list) -> int:
    """Characters of text in these messages' content (strings, text parts, tool results'
    text): a cheap upper-bound input for the context-window check."""
    total = 0
    for msg in messages:
        if type(msg) is not dict:
            continue
        content = msg.get("content")
        if type(content) is str:
            total += len(content)
        elif type(content) is list:
            for part in content:
                if type(part) is not dict:
                    continue
                text = part.get("text")
                if type(text) is str:
                    total += len(text)
                elif part.get("type") == "tool_result":
                    inner = part.get("content")
                    total += content_chars([{"content": inner}])
    return total


def text_parts(content, min_chars: int = 0) -> Iterator[tuple[int | None, str]]:
    """(index, text) of each text in a message's or tool result's content at least
    ``min_chars`` long: the content itself when it is a string (index None), else each
    ``{"type": "text"}`` part of its list (the part's index). Tool output in Anthropic's
    ``tool_result`` and Chat Completions' ``tool`` messages is shaped so."""
    if isinstance(content, str):
        if len(content) >= min_chars:
            yield None, content
    elif isinstance(content, list):
        for k, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "text":
                text = part.get("text")
                if isinstance(text, str) and len(text) >= min_chars:
                    yield k, text


def tools_chars(tools) -> int:
    """A cheap stand-in for the tool definitions' size: each description, plus 300 for its schema."""
    if type(tools) is not list:
        return 0
    return sum(len(t.get("description") or "") + 300 for t in tools if type(t) is dict)


def user_text(content) -> str:
    """The text of a user message's content: a string, or its text parts joined by LF."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") in ("text", "input_text"):
            text = block.get("text")
            if isinstance(text, str):
                parts.append(text)
    return "\n".join(parts)


def turn_units(messages: list, side: Callable[[dict], str | None],
               ids: Callable[[dict], tuple[set[str], set[str]]]) -> list[list[int]]:
    """Droppable units of a conversation (lists of message indices), oldest first.

    A unit is a model turn with everything up to the next one (its tool results, the next
    user prompt): cutting only there never separates a call from its result and keeps the
    roles alternating. ``side`` says who wrote a message (``"assistant"`` for the model);
    consecutive model items without a role (a Responses reasoning item and its call) start
    one unit together. Units are merged while a call issued in one is answered in the next
    (``ids``: the call ids a message issues and answers). System and developer messages are
    never in a unit's way (they are never dropped)."""
    out: list[list[int]] = []
    current: list[int] = []
    seen_assistant = False
    previous: dict | None = None  # the last item that was not system or developer
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            if seen_assistant:
                current.append(i)
            continue
        who = side(msg)
        if who in ("system", "developer"):
            continue  # never dropped; a unit may span it
        same_response = (previous is not None and side(previous) == "assistant"
                         and (msg.get("role") is None or previous.get("role") is None))
        if who == "assistant" and not same_response:
            if current:
                out.append(current)
            current = [i]
            seen_assistant = True
        elif seen_assistant:
            current.append(i)
        previous = msg
    if current:
        out.append(current)
    merged: list[list[int]] = []
    open_ids: set[str] = set()
    for group in out:
        if merged and open_ids:
            merged[-1] = merged[-1] + group
        else:
            merged.append(list(group))
        for i in group:
            issued, answered = ids(messages[i])
            open_ids |= issued
            open_ids -= answered
    return merged


def role(message: dict) -> str | None:
    return message.get("role")


def data_of(event: bytes) -> bytes | None:
    """An SSE event's data as the spec defines it: its ``data`` lines (one leading space
    dropped) joined by LF; ``None`` when it has none."""
    if b"\r" not in event and event.count(b"data:") == 1:  # one data line, LF ends (the common case)
        start = event.find(b"data:")
        if start == 0 or event[start - 1] == 0x0A:
            end = event.find(b"\n", start)
            value = event[start + 5:] if end < 0 else event[start + 5:end]
            return value[1:] if value.startswith(b" ") else value
    parts = []
    for line in _LINE_END.split(event):
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
        elif line == b"data":
            parts.append(b"")
    return b"\n".join(parts) if parts else None


_LINE_END = re.compile(rb"\r\n|\r|\n")  # SSE lines end in CRLF, LF or CR


def split_events(data: bytes) -> list[bytes]:
    """Complete events, from the start of one (as :class:`~headroom.proxy.sse.EventBuffer` hands them out), cut
    into single events, each with its own terminator; joined, they give ``data`` back."""
    if b"\r" not in data and b"\n\n\n" not in data and not data.startswith(b"\n"):
        # LF line ends and no empty event (the common case): every "\n\n" ends one event.
        pieces = data.split(b"\n\n")
        tail = pieces.pop()
        events = [piece + b"\n\n" for piece in pieces]
        if tail:
            events.append(tail)
        return events
    out: list[bytes] = []
    last = 0
    for end in _event_ends(data):
        out.append(data[last:end])
        last = end
    if last < len(data):
        out.append(data[last:])
    return out


def _event_ends(data: bytes):
    """Every event end in ``data`` (which starts at the beginning of a line), in order."""
    line_start = True
    previous_end = 0
    for run in _EOL_RUN.finditer(data):
        run_start, run_end = run.span()
        if run_start > previous_end:
            line_start = False  # text since the last line end
        position = run_start
        while position < run_end:
            position += 2 if data.startswith(b"\r\n", position) else 1
            if line_start:
                yield position  # this line end closed an empty line
            line_start = True
        previous_end = run_end


_EOL_RUN = re.compile(rb"[\r\n]+")  # a run of line-end bytes (CR, LF)
