"""Provider views of a request body: where tool output sits, what the question is, and a
copy-on-write rewrite that leaves everything else (and the input dict) untouched.

Only tool output is ever a candidate: Anthropic ``tool_result`` blocks (string content or its
text parts; not ``is_error`` results, which are short and needed verbatim) and OpenAI
``tool``/``function`` messages; Responses API (``provider`` ``"responses"``)
``function_call_output`` items (:mod:`headroom.transforms.responses`). User and assistant text is never
rewritten: the newest user text is sent as is, and rewriting it on a later turn would change
bytes the provider has already cached. The system prompt and tool definitions are never
touched either.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from headroom.transforms import responses
from headroom.transforms.terms import strip_reminders

# Location of a text inside a body: (message index, content index, part index), where the
# meaning of the last two depends on the provider; None means "the whole field".
Path = tuple[int, "int | None", "int | None"]


@dataclass(frozen=True)
class Block:
    path: Path
    text: str
    tool_name: str | None
    tool_input: dict | None = None  # the call's arguments (``Bash``'s command, …)


Call = tuple[str, "dict | None"]  # (tool name, its input)


def _anthropic_calls(messages: list) -> dict[str, Call]:
    calls: dict[str, Call] = {}
    for msg in messages:
        if not isinstance(msg, dict) or msg.get("role") != "assistant":
            continue
        content = msg.get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") in ("tool_use", "server_tool_use"):
                    if isinstance(block.get("id"), str) and isinstance(block.get("name"), str):
                        tool_input = block.get("input")
                        calls[block["id"]] = (block["name"], tool_input if isinstance(tool_input, dict) else None)
    return calls


def _openai_calls(messages: list) -> dict[str, Call]:
    calls: dict[str, Call] = {}
    for msg in messages:
        if not isinstance(msg, dict) or msg.get("role") != "assistant":
            continue
        for call in msg.get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("id"), str):
                fn = call.get("function")
                if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                    calls[call["id"]] = (fn["name"], _arguments(fn.get("arguments")))
    return calls


def _arguments(raw) -> dict | None:
    """OpenAI sends arguments as a JSON string; only small ones are worth parsing here."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and len(raw) < 4096:
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
    return None


def max_output_tokens(body: dict) -> int | None:
    """The output limit a request sets (``max_tokens``, ``max_completion_tokens`` or
    ``max_output_tokens``, whichever the format uses), or None."""
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _messages(body: dict, provider: str = "") -> list:
    """The conversation: ``messages``, or a Responses body's ``input`` items."""
    if provider == responses.FORMAT:
        return responses.items(body)
    messages = body.get("messages")
    return messages if isinstance(messages, list) else []


def iter_anthropic(messages: list, min_chars: int = 0) -> Iterator[tuple[Path, str, str | None]]:
    """(path, text, tool_use_id) of every tool_result text at least ``min_chars`` long."""
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") != "user":
            continue
        content = msg.get("content")
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            if not isinstance(block, dict) or block.get("type") != "tool_result" or block.get("is_error"):
                continue
            inner = block.get("content")
            tool_id = block.get("tool_use_id")
            if isinstance(inner, str):
                if len(inner) >= min_chars:
                    yield (i, j, None), inner, tool_id
            elif isinstance(inner, list):
                for k, part in enumerate(inner):
                    if isinstance(part, dict) and part.get("type") == "text":
                        text = part.get("text")
                        if isinstance(text, str) and len(text) >= min_chars:
                            yield (i, j, k), text, tool_id


def iter_openai(messages: list, min_chars: int = 0) -> Iterator[tuple[Path, str, str | None]]:
    """(path, text, tool_call_id or function name) of every tool message text."""
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("tool", "function"):
            continue
        ref = msg.get("tool_call_id") if msg.get("role") == "tool" else None
        content = msg.get("content")
        if isinstance(content, str):
            if len(content) >= min_chars:
                yield (i, None, None), content, ref
        elif isinstance(content, list):
            for k, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "text":
                    text = part.get("text")
                    if isinstance(text, str) and len(text) >= min_chars:
                        yield (i, k, None), text, ref


def content_chars(messages: list) -> int:
    """Characters of text in these messages' content (strings, text parts, tool results'
    text): a cheap upper-bound input for the context-window check."""
    total = 0
    for msg in messages:
        if type(msg) is not dict:
            continue
        content = msg.get("content")
        if type(content) is str:
            total += len(content)
        elif type(content) is list:
            for part in content:
                if type(part) is not dict:
                    continue
                text = part.get("text")
                if type(text) is str:
                    total += len(text)
                elif part.get("type") == "tool_result":
                    inner = part.get("content")
                    total += content_chars([{"content": inner}])
    return total


def find_blocks(body: dict, provider: str, min_chars: int = 0) -> list[Block]:
    """Every tool-output text in the request, with the name of the tool that produced it."""
    messages = _messages(body, provider)
    if provider == responses.FORMAT:
        found = list(responses.iter_outputs(messages, min_chars))
        calls = responses.calls(messages) if found else {}
        blocks = []
        for path, text, ref in found:
            name, raw = calls.get(ref, (None, None))
            tool_input = _arguments(raw) if isinstance(raw, str) and raw[:1] == "{" else (
                {"input": raw} if isinstance(raw, str) else None)
            blocks.append(Block(path, text, name, tool_input))
        return blocks
    if provider == "anthropic":
        found = list(iter_anthropic(messages, min_chars))
        calls = _anthropic_calls(messages) if found else {}
        return [Block(path, text, *calls.get(ref, (None, None))) for path, text, ref in found]
    found = list(iter_openai(messages, min_chars))
    if not found:
        return []
    calls = _openai_calls(messages)
    blocks = []
    for path, text, ref in found:
        if ref:
            name, tool_input = calls.get(ref, (None, None))
        else:  # legacy "function" role message: the name is on the message
            name, tool_input = messages[path[0]].get("name"), None
        blocks.append(Block(path, text, name if isinstance(name, str) else None, tool_input))
    return blocks


def _user_text(content) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") in ("text", "input_text"):
            text = block.get("text")
            if isinstance(text, str):
                parts.append(text)
    return "\n".join(parts)


def question_text(body: dict, provider: str = "") -> str:
    """Text of the newest user message that has any (tool results and reminders aside)."""
    if provider == responses.FORMAT:
        if isinstance(body.get("input"), str):
            return strip_reminders(body["input"]).strip()
        for content in responses.user_contents(responses.items(body)):
            text = strip_reminders(_user_text(content)).strip()
            if text:
                return text
        return ""
    for msg in reversed(_messages(body)):
        if isinstance(msg, dict) and msg.get("role") == "user":
            text = strip_reminders(_user_text(msg.get("content"))).strip()
            if text:
                return text
    return ""


def replace_blocks(body: dict, provider: str, new_texts: dict[Path, str]) -> dict:
    """A new body with the given texts replaced; shares every untouched object with ``body``."""
    if provider == responses.FORMAT:
        return responses.replace_outputs(body, new_texts)
    messages = list(_messages(body))
    by_message: dict[int, list[tuple[Path, str]]] = {}
    for path, text in new_texts.items():
        by_message.setdefault(path[0], []).append((path, text))
    for i, changes in by_message.items():
        msg = dict(messages[i])
        content = msg["content"]
        if provider == "anthropic":
            content = list(content)
            copied: set[int] = set()
            for (_, j, k), text in changes:
                if j not in copied:
                    content[j] = dict(content[j])
                    if k is not None:
                        content[j]["content"] = list(content[j]["content"])
                    copied.add(j)
                if k is None:
                    content[j]["content"] = text
                else:
                    parts = content[j]["content"]
                    parts[k] = {**parts[k], "text": text}
        else:
            for (_, k, _unused), text in changes:
                if k is None:
                    content = text
                else:
                    if content is msg["content"]:
                        content = list(content)
                    content[k] = {**content[k], "text": text}
        msg["content"] = content
        messages[i] = msg
    out = dict(body)
    out["messages"] = messages
    return out
