"""The pipeline's view of a request body, whatever its format: where tool output sits, what
the question is, and a copy-on-write rewrite that leaves everything else (and the input dict)
untouched.

Only tool output is ever a candidate; where it sits is the format's knowledge
(:meth:`~headroom.formats.base.Format.blocks`). User and assistant text is never rewritten:
the newest user text is sent as is, and rewriting it on a later turn would change bytes the
provider has already cached. The system prompt and tool definitions are never touched either.
``fmt`` is a :class:`~headroom.formats.base.Format` or its name.
"""

from __future__ import annotations

from headroom.formats import Block, Format, Path, named
from headroom.transforms.terms import strip_reminders

__all__ = ["Block", "Path", "find_blocks", "question_text", "replace_blocks"]


def find_blocks(body: dict, fmt: Format | str, min_chars: int = 0) -> list[Block]:
    """Every tool-output text in the request, with the name of the tool that produced it."""
    return named(fmt).blocks(body, min_chars)


def question_text(body: dict, fmt: Format | str = "chat") -> str:
    """Text of the newest user message that has any (tool results and reminders aside);
    ``fmt`` defaults to a ``messages`` body."""
    for text in named(fmt).user_texts(body):
        text = strip_reminders(text).strip()
        if text:
            return text
    return ""


def replace_blocks(body: dict, fmt: Format | str, new_texts: dict[Path, str]) -> dict:
    """A new body with the given texts replaced; shares every untouched object with ``body``."""
    return named(fmt).rewrite(body, new_texts)
