"""Context-window fitting: drop the oldest whole turns, only when a request would not fit.

A request over the window is rejected by the provider, so dropping old turns is the lesser
evil. What may go: whole *units* — an assistant message with everything up to the next
assistant message (its tool results, the next user prompt). Cutting only at those
boundaries never separates a tool call from its result and keeps user/assistant alternation.
What never goes: system messages, the opening user message(s) (the task, and Claude Code's
project context), and the last ``keep_last`` units.

Cache friendliness: the amount dropped is rounded up to a multiple of ``step`` tokens, so
the cut point stays put for many turns instead of moving every turn (each move rewrites the
prefix and costs a cache write).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from headroom import model_names
from headroom.formats import Format, named


@dataclass(frozen=True)
class ModelLimits:
    context: int
    max_input: int | None = None


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(resources.files("headroom.data").joinpath("context_windows.json").read_text("utf-8"))


@lru_cache(maxsize=256)
def model_limits(model: str | None, family: str, default_window: int | None = None) -> ModelLimits:
    """Window for a model id (:func:`headroom.model_names.resolve`), else the family's
    default in the table (``"anthropic"``, ``"openai"``), else ``default_window``."""
    table = _table()
    found = model_names.resolve(model, table["models"]) if model else None
    fallback = {"context": default_window} if default_window else table["default"]
    entry = found[1] if found else table["providers"].get(family, fallback)
    return ModelLimits(int(entry["context"]), entry.get("max_input"))


def input_budget(body: dict, fmt: Format | str, margin: float) -> int:
    """Tokens the input may use: window minus the requested output, times a safety margin.

    The margin covers the difference between o200k counts and the provider's tokenizer.
    ``fmt``: the request's format (or its name).
    """
    fmt = named(fmt)
    limits = model_limits(body.get("model"), fmt.window_family, fmt.default_window)
    reserve = fmt.max_output_tokens(body) or 0
    budget = limits.context - reserve
    if limits.max_input:
        budget = min(budget, limits.max_input)
    return max(0, int(budget * margin))


@dataclass(frozen=True)
class FitResult:
    keep: list[int]  # message indices kept, in order
    dropped_units: int
    dropped_tokens: int


def fit(messages: list, message_tokens: list[int], total: int, budget: int,
        keep_last: int, step: int, fmt: Format | str = "chat") -> FitResult | None:
    """Which messages to keep so that ``total`` fits ``budget``; None when it already fits.
    The droppable units are the format's (:meth:`~headroom.formats.base.Format.units`)."""
    need = total - budget
    if need <= 0:
        return None
    target = math.ceil(need / step) * step if step > 0 else need
    groups = named(fmt).units(messages)
    droppable = groups[: max(0, len(groups) - keep_last)]
    dropped: set[int] = set()
    dropped_tokens = 0
    count = 0
    for group in droppable:
        if dropped_tokens >= target:
            break
        dropped.update(group)
        dropped_tokens += sum(message_tokens[i] for i in group)
        count += 1
    if not count:
        return None
    keep = [i for i in range(len(messages)) if i not in dropped]
    return FitResult(keep, count, dropped_tokens)
