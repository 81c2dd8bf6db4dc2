"""Plain text (prose, web pages, messages): whitespace normalisation, and extraction when long.

Prose carries its meaning in the words; any rewording risks dropping the very fact asked
about. What is safe: trailing spaces, runs of blank lines, runs of spaces inside a line,
and non-breaking or zero-width spaces. Leading indentation is kept (it nests lists and code).
Long prose (over ``lossy_min_chars``) is cut down by :mod:`prose` (the original retrievable).
"""

from __future__ import annotations

from headroom.transforms import prose
from headroom.transforms.base import Brief, Compressed
from headroom.transforms.whitespace import normalise, normalise_lines

__all__ = ["MIN_SAVING", "compress", "normalise", "normalise_lines"]

MIN_SAVING = 0.05


def compress(text: str, brief: Brief) -> Compressed | None:
    """Prose: long outputs go to the extractive compressor (:mod:`prose`), unless the model
    server compresses prose instead (``brief.limits.extract_prose`` off); the rest is whitespace."""
    if brief.limits.extract_prose and len(text) > brief.limits.lossy_min_chars:
        extracted = prose.compress(text, brief)
        if extracted is not None:
            return extracted
    out = normalise(text)
    if len(out) > len(text) * (1 - MIN_SAVING) or out == text:  # (== : an empty block)
        return None
    return Compressed(out, ("text:whitespace",))
