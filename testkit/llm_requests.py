"""What black-box tests send to a running proxy: credential headers, small request bodies of
both providers, a tool output the JSON compressor trims, and one shared HTTP client.

One client for every test: making an httpx client (TLS context and all) costs more than a request.
"""

from __future__ import annotations

import json
import re

import httpx

HTTP = httpx.Client(timeout=30)
ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-hardening", "anthropic-version": ANTHROPIC_VERSION,
                     "content-type": "application/json"}
OPENAI_HEADERS = {"authorization": "Bearer sk-hardening", "content-type": "application/json"}
#: The smallest good Anthropic Messages request.
GOOD = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def anthropic_body(text: str, *, stream: bool = False, max_tokens: int = 16, tool_output: str | None = None) -> dict:
    """A Messages request asking ``text``; with ``tool_output``, after a tool round trip that returned it."""
    messages: list[dict] = [{"role": "user", "content": text}]
    if tool_output is not None:
        messages = [
            {"role": "user", "content": "List the orders"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "fetch_orders",
                                               "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": tool_output},
                                         {"type": "text", "text": text}]},
        ]
    body = {"model": "claude-sonnet-4-5", "max_tokens": max_tokens, "messages": messages}
    if stream:
        body["stream"] = True
    return body


def openai_body(text: str, *, stream: bool = False, max_tokens: int = 16, tool_output: str | None = None) -> dict:
    """The Chat Completions counterpart of :func:`anthropic_body`."""
    messages: list[dict] = [{"role": "user", "content": text}]
    if tool_output is not None:
        messages = [
            {"role": "user", "content": text},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "fetch_orders", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": tool_output},
        ]
    body = {"model": "gpt-4o", "max_tokens": max_tokens, "messages": messages}
    if stream:
        body["stream"] = True
    return body


def bulky_json(rows: int = 400, salt: str = "") -> str:
    """A tool output the JSON compressor trims (and stores the original of, for /v1/retrieve)."""
    return json.dumps([{"id": i, "status": "shipped" if i % 7 else "delayed", "customer": f"cust-{salt}{i:05d}",
                        "total": round(i * 3.17, 2), "note": "standard delivery window"} for i in range(rows)])


def retrieval_keys(text: str) -> list[str]:
    """The retrieval keys named by compression markers in ``text``."""
    return re.findall(r"\[headroom:[^\]]*?\b([0-9a-f]{16})\b[^\]]*\]", text)
