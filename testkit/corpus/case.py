"""What a corpus case is, and the helpers its generators share (:mod:`testkit.corpus.cases`,
:mod:`testkit.corpus.shell_cases`): in a module of their own, so neither imports the other."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    name: str
    tool: str  # tool name as the agent calls it
    tool_input: dict
    content: str
    question: str
    answers: tuple[str, ...]
    provider: str = "anthropic"
    same_line: tuple[str, ...] = ()
    deep: bool = False
    unchanged: bool = False  # must come back byte for byte (file reads)
    notes: str = ""
    extra: dict = field(default_factory=dict)


# --- helpers: deterministic names, times and ids from a seeded generator --------------------

FIRST = ["anna", "ben", "chen", "diego", "elif", "femi", "greta", "hiro", "ines", "jonas", "kofi",
         "lena", "marco", "nadia", "omar", "priya", "quinn", "rosa", "sven", "tariq", "uma", "vik",
         "wren", "xia", "yusuf", "zoe"]
LAST = ["schmidt", "okafor", "tanaka", "garcia", "novak", "kowalczyk", "haddad", "larsen", "moreau",
        "rossi", "silva", "nguyen", "petrov", "kim", "ali", "brown", "fischer", "dubois"]


def login_name(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    style = rng.randrange(3)
    if style == 0:
        return f"{first}{last[0]}"
    if style == 1:
        return f"{first[0]}{last}"
    return f"{first}-{last}{rng.randrange(10, 99)}"


def iso_time(rng: random.Random, year: int = 2025, month: int | None = None) -> str:
    m = month or rng.randint(1, 12)
    day, hour, minute, second = rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    return f"{year}-{m:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"


def hex_digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def aligned_table(header: list[str], rows: list[list[str]], gap: int = 3) -> str:
    """Columns padded to their widest cell, as kubectl and docker print them."""
    widths = [max(len(r[i]) for r in [header, *rows]) + gap for i in range(len(header))]
    return "\n".join("".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])
