"""The header a client wraps around a command's output, split off before detection.

The Codex CLI sends a command's output as::

    Chunk ID: f234fc
    Wall time: 0.0086 seconds
    Process exited with code 0
    Original token count: 24
    Output:
    <the output>

(older versions: ``Exit code: 0`` / ``Wall time: …`` / ``Output:``). Detection has to judge the
output, not the header: five lines of ``Key: value`` become a table's header row or dilute a
log's share of timestamped lines. The header itself goes upstream byte for byte: it is small,
and the exit code is often the point.
"""

from __future__ import annotations

import re

_HEADER = re.compile(
    r"(?:(?:Command|Chunk ID|Wall time|Exit code|Original token count|Total output lines): [^\n]*\n"
    r"|Process (?:exited with code -?\d+|running with session ID \S+)\n){1,8}Output:\n"
)


def split(text: str) -> tuple[str, str]:
    """(header, output): the header through its ``Output:`` line, or ``""`` when there is none."""
    if not text.startswith(("C", "W", "E", "O", "T", "P")):
        return "", text
    match = _HEADER.match(text)
    if match is None:
        return "", text
    return match.group(0), text[match.end():]
