"""Whitespace that carries no meaning in prose: trailing spaces, runs of blank lines, runs of
spaces inside a line, non-breaking and zero-width spaces. Leading indentation and code fences
are kept. Shared by :mod:`text_compressor` and :mod:`prose` (which names original lines).
"""

from __future__ import annotations

import re

_INNER_SPACES = re.compile(r"(?<=\S)[ \t\u00a0]{2,}(?=\S)")
_BLANK_RUNS = re.compile(r"\n{3,}")
# Zero-width *spaces* only. The zero-width joiner and non-joiner (U+200D, U+200C) are not
# spacing: they build emoji sequences and are spelling in Persian, Hindi and other scripts.
_INVISIBLE = re.compile(r"[\u200b\ufeff]")
_CODE_FENCE = "```"


def normalise(text: str) -> str:
    return _BLANK_RUNS.sub("\n\n", "\n".join(normalise_lines(text))).strip("\n")


def normalise_lines(text: str) -> list[str]:
    """:func:`normalise` line by line, without collapsing blank lines: line *i* of the result
    is line *i* of the input (``\r\n`` counted as one line end), so notes can name lines."""
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
    return out
