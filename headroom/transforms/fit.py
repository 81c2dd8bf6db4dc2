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
from headroom.transforms.blocks import max_output_tokens
from headroom.transforms.responses import CALL_ITEMS, OUTPUT_ITEMS


@dataclass(frozen=True)
class ModelLimits:
    context: int
    max_input: int | None = None


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(resources.files("headroom.data").joinpath("context_windows.json").read_text("utf-8"))


@lru_cache(maxsize=256)
def model_limits(model: str | None, provider: str) -> ModelLimits:
    """Window for a model id (:func:`headroom.model_names.resolve`), else the provider's default."""
    table = _table()
    found = model_names.resolve(model, table["models"]) if model else None
    entry = found[1] if found else table["providers"].get(provider, table["default"])
    return ModelLimits(int(entry["context"]), entry.get("max_input"))


def input_budget(body: dict, provider: str, margin: float) -> int:
    """Tokens the input may use: window minus the requested output, times a safety margin.

    The margin covers the difference between o200k counts and the provider's tokenizer.
    """
    limits = model_limits(body.get("model"), provider)
    reserve = max_output_tokens(body) or 0
    budget = limits.context - reserve
    if limits.max_input:
        budget = min(budget, limits.max_input)
    return max(0, int(budget * margin))


# Responses API items: calls carry a ``call_id``, answered by the output item with the same one.


def _side(item: dict) -> str | None:
    """Who said it: the role, or for a Responses item without one, ``"tool"`` for a tool's
    output and ``"assistant"`` for what the model produced (reasoning, calls …)."""
    role = item.get("role")
    if role is not None or item.get("type") is None:
        return role
    return "tool" if item["type"] in OUTPUT_ITEMS else "assistant"


def _ids(message: dict) -> tuple[set[str], set[str]]:
    """(tool call ids issued, tool call ids answered) by one message or Responses item."""
    issued: set[str] = set()
    answered: set[str] = set()
    kind = message.get("type")
    if kind in CALL_ITEMS and message.get("call_id"):
        issued.add(message["call_id"])
    elif kind in OUTPUT_ITEMS and message.get("call_id"):
        answered.add(message["call_id"])
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict) and call.get("id"):
            issued.add(call["id"])
    if message.get("tool_call_id"):
        answered.add(message["tool_call_id"])
    content = message.get("content")
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind in ("tool_use", "server_tool_use") and block.get("id"):
                issued.add(block["id"])
            elif kind == "tool_result" and block.get("tool_use_id"):
                answered.add(block["tool_use_id"])
    return issued, answered


def units(messages: list) -> list[list[int]]:
    """Droppable units (lists of message or Responses item indices), oldest first.

    One model response in the Responses API is several items in a row (``reasoning``, a
    ``message``, ``function_call`` …): they start one unit together, because the API refuses
    a call whose reasoning item is missing."""
    out: list[list[int]] = []
    current: list[int] = []
    seen_assistant = False
    previous: dict | None = None  # the last item that was not system or developer
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            if seen_assistant:
                current.append(i)
            continue
        side = _side(msg)
        if side in ("system", "developer"):
            continue  # never dropped; a unit may span it
        same_response = (previous is not None and _side(previous) == "assistant"
                         and (msg.get("role") is None or previous.get("role") is None))
        if side == "assistant" and not same_response:
            if current:
                out.append(current)
            current = [i]
            seen_assistant = True
        elif seen_assistant:
            current.append(i)
        previous = msg
    if current:
        out.append(current)
    return _merge_open_calls(messages, out)


def _merge_open_calls(messages: list, groups: list[list[int]]) -> list[list[int]]:
    """Merge neighbouring units while a tool call issued in one is answered in the next."""
    merged: list[list[int]] = []
    open_ids: set[str] = set()
    for group in groups:
        if merged and open_ids:
            merged[-1] = merged[-1] + group
        else:
            merged.append(list(group))
        for i in group:
            issued, answered = _ids(messages[i])
            open_ids |= issued
            open_ids -= answered
    return merged


@dataclass(frozen=True)
class FitResult:
    keep: list[int]  # message indices kept, in order
    dropped_units: int
    dropped_tokens: int


def fit(messages: list, message_tokens: list[int], total: int, budget: int,
        keep_last: int, step: int) -> FitResult | None:
    """Which messages to keep so that ``total`` fits ``budget``; None when it already fits."""
    need = total - budget
    if need <= 0:
        return None
    target = math.ceil(need / step) * step if step > 0 else need
    groups = units(messages)
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
