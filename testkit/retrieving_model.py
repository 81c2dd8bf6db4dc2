"""The mock upstream's careful model: it needs one fact, and fetches it back when a marker hid it.

Tests only. A test names the fact the model is after, either in the ``x-mock-seek`` request
header (which the proxy forwards on every upstream call of a request) or in the newest user
text as ``[seek: FACT]`` (for real CLIs, whose headers a test cannot set). The model then:

1. answers ``Found: <the line holding the fact>`` as soon as anything it received (tool
   outputs, tool results, user texts) holds the fact;
2. otherwise, when a Headroom marker is in what it received and it has not yet asked that
   key for this fact (the newest marker first), and the request declares the ``headroom_retrieve`` tool and lets it
   call tools, calls ``headroom_retrieve`` with the marker's key and ``query`` = the fact. The
   tool is the proxy's own, or the one an MCP client offers from ``headroom mcp`` under its own
   name (Claude Code: ``mcp__headroom__headroom_retrieve``): the model calls it by the name
   declared. A client that offers the tool only on request (Claude Code defers MCP tools: their
   names are listed, and its ``ToolSearch`` tool loads one) gets a request to load it first;
3. otherwise answers ``Not found: <fact>``.

Pure and format-agnostic: each format's reply in :mod:`testkit.mock_upstream` flattens its
request into :class:`Seen` and renders the :class:`Retrieve`, :class:`Load` or :class:`Answer`
in its shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SEEK_HEADER = "x-mock-seek"
TOOL_NAME = "headroom_retrieve"
FOUND = "Found: "  # the answer quoting the line that holds the fact
NOT_FOUND = "Not found: "  # the answer naming the fact it could not find

_SEEK_IN_TEXT = re.compile(r"\[seek: ([^\]]+)\]")
# A Headroom marker: "[headroom: … <16 hex digits> …]", whatever its wording around the key.
_MARKER_KEY = re.compile(r"\[headroom:[^\]]*?\b([0-9a-f]{16})\b[^\]]*\]")
# Headroom's own notes (markers, a retrieval answer's header, a tool error): they may quote the
# fact sought (a query echoed back) without holding it.
_NOTE = re.compile(r"^\s*\[(?:headroom|\d+ line\(s\) of |lines? \d+)")


@dataclass(frozen=True)
class Retrieve:
    key: str
    query: str
    tool: str = TOOL_NAME  # the name the tool is declared under


@dataclass(frozen=True)
class Load:
    """Ask the client to load the deferred retrieval tool ``tool`` before calling it."""

    tool: str


@dataclass(frozen=True)
class Answer:
    text: str


@dataclass
class Seen:
    """What the model received, flattened: every text in order, the retrieval calls it already
    made (key, query), whether the tool is declared, and whether it may call tools now."""

    texts: list[str] = field(default_factory=list)
    asked: list[tuple[str, str]] = field(default_factory=list)
    declared: bool = False
    may_call: bool = True
    tool: str = TOOL_NAME  # the name the retrieval tool is declared under
    deferred: str | None = None  # its name when the client offers it only once loaded (not yet asked)


def is_retrieval(name: object) -> bool:
    """``headroom_retrieve`` by the proxy's name or by an MCP client's (``mcp__<server>__headroom_retrieve``)."""
    return isinstance(name, str) and (name == TOOL_NAME or name.endswith("__" + TOOL_NAME))


def retrieval_tool(names) -> str | None:
    """The name the retrieval tool is declared under among ``names``: the proxy's own first,
    else the first an MCP client offers; None when neither is declared."""
    names = [name for name in names if is_retrieval(name)]
    return TOOL_NAME if TOOL_NAME in names else (names[0] if names else None)


def seek_of(headers, newest_user_text: str) -> str | None:
    """The fact sought: the header, else ``[seek: …]`` in the newest user text, else None."""
    value = headers.get(SEEK_HEADER) if headers is not None else None
    if value:
        return value
    found = _SEEK_IN_TEXT.search(newest_user_text or "")
    return found.group(1).strip() if found else None


def decide(seek: str, seen: Seen) -> Retrieve | Load | Answer:
    """The careful model's next move (see the module docstring)."""
    needle = seek.lower()
    for text in seen.texts:
        for line in text.splitlines():
            if needle in line.lower() and not _SEEK_IN_TEXT.search(line) and not _NOTE.match(line):
                return Answer(f"{FOUND}{line.strip()}")
    if (seen.declared or seen.deferred) and seen.may_call:
        for text in reversed(seen.texts):  # the newest output first, as an agent reads its session
            for key in _MARKER_KEY.findall(text):
                if (key, seek) not in seen.asked:
                    return Retrieve(key, seek, seen.tool) if seen.declared else Load(str(seen.deferred))
    return Answer(f"{NOT_FOUND}{seek}")
