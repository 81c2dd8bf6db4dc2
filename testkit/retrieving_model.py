"""The mock upstream's careful model: it needs one fact, and fetches it back when a marker hid it.

Tests only. A test names the fact the model is after, either in the ``x-mock-seek`` request
header (which the proxy forwards on every upstream call of a request) or in the newest user
text as ``[seek: FACT]`` (for real CLIs, whose headers a test cannot set). The model then:

1. answers ``Found: <the line holding the fact>`` as soon as anything it received (tool
   outputs, tool results, user texts) holds the fact;
2. otherwise, when a Headroom marker is in what it received and it has not yet asked that
   key for this fact, and the request declares the ``headroom_retrieve`` tool and lets it
   call tools, calls ``headroom_retrieve`` with the marker's key and ``query`` = the fact;
3. otherwise answers ``Not found: <fact>``.

Pure and format-agnostic: each format's reply in :mod:`testkit.mock_upstream` flattens its
request into :class:`Seen` and renders the :class:`Retrieve` or :class:`Answer` in its shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SEEK_HEADER = "x-mock-seek"
TOOL_NAME = "headroom_retrieve"

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


def seek_of(headers, newest_user_text: str) -> str | None:
    """The fact sought: the header, else ``[seek: …]`` in the newest user text, else None."""
    value = headers.get(SEEK_HEADER) if headers is not None else None
    if value:
        return value
    found = _SEEK_IN_TEXT.search(newest_user_text or "")
    return found.group(1).strip() if found else None


def decide(seek: str, seen: Seen) -> Retrieve | Answer:
    """The careful model's next move (see the module docstring)."""
    needle = seek.lower()
    for text in seen.texts:
        for line in text.splitlines():
            if needle in line.lower() and not _SEEK_IN_TEXT.search(line) and not _NOTE.match(line):
                return Answer(f"Found: {line.strip()}")
    if seen.declared and seen.may_call:
        for text in seen.texts:
            for key in _MARKER_KEY.findall(text):
                if (key, seek) not in seen.asked:
                    return Retrieve(key, seek)
    return Answer(f"Not found: {seek}")
