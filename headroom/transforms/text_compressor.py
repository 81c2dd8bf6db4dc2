"""Plain text (prose, web pages, messages): whitespace normalisation only.

Prose carries its meaning in the words; any rewording risks dropping the very fact asked
about. What is safe: trailing spaces, runs of blank lines, runs of spaces inside a line,
and non-breaking or zero-width spaces. Leading indentation is kept (it nests lists and code).
"""

from __future__ import annotations

import re

from headroom.transforms.base import Brief, Compressed

_INNER_SPACES = re.compile(r"(?<=\S)[ \t\u00a0]{2,}(?=\S)")
_BLANK_RUNS = re.compile(r"\n{3,}")
# Zero-width *spaces* only. The zero-width joiner and non-joiner (U+200D, U+200C) are not
# spacing: they build emoji sequences and are spelling in Persian, Hindi and other scripts.
_INVISIBLE = re.compile(r"[\u200b\ufeff]")
_CODE_FENCE = "```"
MIN_SAVING = 0.05


def normalise(text: str) -> str:
    if "\u200b" in text or "\ufeff" in text:
        text = _INVISIBLE.sub("", text)
    out: list[str] = []
    in_fence = False
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.lstrip().startswith(_CODE_FENCE):
            in_fence = not in_fence
        line = line.rstrip()
        if not in_fence and ("  " in line or "\u00a0" in line or "\t" in line.lstrip()):
            indent = len(line) - len(line.lstrip())
            line = line[:indent] + _INNER_SPACES.sub(" ", line[indent:])
        out.append(line)
    return _BLANK_RUNS.sub("\n\n", "\n".join(out)).strip("\n")


def compress(text: str, brief: Brief) -> Compressed | None:
    out = normalise(text)
    if len(out) > len(text) * (1 - MIN_SAVING) or out == text:  # (== : an empty block)
        return None
    return Compressed(out, ("text:whitespace",))
