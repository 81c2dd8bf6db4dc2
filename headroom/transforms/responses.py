"""The OpenAI Responses API (``POST /v1/responses``) as the pipeline sees it.

A Responses body carries its conversation in ``input``: a string (one user message) or a
list of *items*. Tool output is in ``function_call_output`` and ``custom_tool_call_output``
items (``output``: a string, or a list of ``input_text`` / image / file parts); those are
the only candidates, exactly like ``tool`` messages in Chat Completions. ``instructions``,
system and developer messages, user and assistant messages, the calls themselves and the
tool definitions are never touched; every other field (``prompt_cache_key``, ``store``,
``include``, item ids, ``previous_response_id`` …) passes unchanged.

With ``previous_response_id`` the upstream keeps the earlier turns: ``input`` holds only
the new items, so only those are visible here (and compressed), and context fitting leaves
the request alone (:func:`fittable`).

Paths are ``(item index, part index or None, None)``, the shape of
:data:`headroom.transforms.blocks.Path`.
"""

from __future__ import annotations

from collections.abc import Iterator

#: The pipeline's name for this wire format (``provider`` argument of the transforms).
FORMAT = "responses"
#: Item types that carry a tool's output, and the calls with the field holding their arguments.
OUTPUT_ITEMS = ("function_call_output", "custom_tool_call_output")
CALL_ITEMS = {"function_call": "arguments", "custom_tool_call": "input"}


def items(body: dict) -> list:
    """The input items (``[]`` for a plain-string ``input``: nothing to compress there)."""
    value = body.get("input")
    return value if isinstance(value, list) else []


def iter_outputs(input_items: list, min_chars: int = 0) -> Iterator[tuple[tuple, str, str | None]]:
    """(path, text, call_id) of every tool output text at least ``min_chars`` long."""
    for i, item in enumerate(input_items):
        if type(item) is not dict or item.get("type") not in OUTPUT_ITEMS:
            continue
        ref = item.get("call_id")
        output = item.get("output")
        if type(output) is str:
            if len(output) >= min_chars:
                yield (i, None, None), output, ref
        elif type(output) is list:
            for k, part in enumerate(output):
                if type(part) is dict and part.get("type") in ("input_text", "output_text", "text"):
                    text = part.get("text")
                    if type(text) is str and len(text) >= min_chars:
                        yield (i, k, None), text, ref


def calls(input_items: list) -> dict[str, tuple[str, object]]:
    """call_id → (tool name, raw arguments or custom input) of the calls in ``input``."""
    found: dict[str, tuple[str, object]] = {}
    for item in input_items:
        if type(item) is not dict:
            continue
        field = CALL_ITEMS.get(item.get("type"))
        if field and isinstance(item.get("call_id"), str) and isinstance(item.get("name"), str):
            found[item["call_id"]] = (item["name"], item.get(field))
    return found


def user_contents(input_items: list) -> Iterator:
    """Contents of the user messages, newest first."""
    for item in reversed(input_items):
        if type(item) is dict and item.get("role") == "user" and item.get("type", "message") == "message":
            yield item.get("content")


def replace_outputs(body: dict, new_texts: dict[tuple, str]) -> dict:
    """A new body with the given tool output texts replaced; shares everything else."""
    original = items(body)
    new_items = list(original)
    for (i, k, _unused), text in new_texts.items():
        if new_items[i] is original[i]:
            new_items[i] = dict(original[i])
            if type(original[i]["output"]) is list:
                new_items[i]["output"] = list(original[i]["output"])
        if k is None:
            new_items[i]["output"] = text
        else:
            new_items[i]["output"][k] = {**new_items[i]["output"][k], "text": text}
    out = dict(body)
    out["input"] = new_items
    return out


def fittable(body: dict) -> bool:
    """Whether context fitting may drop old items: the whole conversation is in ``input``
    (with ``previous_response_id`` the upstream holds the earlier turns)."""
    return not body.get("previous_response_id") and type(body.get("input")) is list


def input_chars(input_items: list) -> int:
    """Characters of text in the input items (message text, call arguments, tool outputs): a
    cheap input for the context-window check, which runs on every request."""
    total = 0
    for item in input_items:
        if type(item) is not dict:
            continue
        for key in ("content", "output"):
            value = item.get(key)
            if type(value) is str:
                total += len(value)
            elif type(value) is list:
                for part in value:
                    text = part.get("text") if type(part) is dict else None
                    if type(text) is str:
                        total += len(text)
        for key in ("arguments", "input"):  # function and custom tool calls
            value = item.get(key)
            if type(value) is str:
                total += len(value)
    return total


def fixed_text(body: dict) -> list:
    """What the model reads besides the input items: ``instructions`` and tool definitions."""
    return [body.get("instructions"), body.get("tools")]
