"""How a model id resolves to an entry of a per-model table (prices, context windows).

One rule for every table: the id is normalised (lower case; provider prefixes such as
``openai/…`` and Bedrock's ``us.anthropic.…`` dropped), then the longest table key that is a
prefix of it *and ends at a name boundary* wins. So dated snapshots resolve
(``claude-sonnet-4-5-20250929`` → ``claude-sonnet-4-5``, ``gpt-4o-mini-2024-07-18`` →
``gpt-4o-mini``) while ``gpt-4o`` never swallows ``gpt-4o-mini``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

V = TypeVar("V")

_BOUNDARY = frozenset("-@:._ ")


def normalise(model: str) -> str:
    name = model.strip().lower()
    name = name.rsplit("/", 1)[-1]
    if "anthropic." in name:  # Bedrock: [region.]anthropic.claude-…-v1:0
        name = name.split("anthropic.", 1)[1]
    return name


def resolve(model: str, table: Mapping[str, V]) -> tuple[str, V] | None:
    """(key, value) of the table entry for ``model`` (keys already normalised), or None."""
    name = normalise(model)
    for end in range(len(name), 0, -1):
        if end < len(name) and name[end] not in _BOUNDARY:
            continue
        value = table.get(name[:end])
        if value is not None:
            return name[:end], value
    return None
