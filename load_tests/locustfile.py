"""Locust scenarios: realistic clients through the Headroom proxy, against the mock upstream.

Three user classes, each checking every answer it gets (a failed check is a failed request):

- :class:`ClaudeCodeSession` -- a Claude-Code-shaped session (headers, beta flags, a 26 KB
  system prompt in three blocks, 24 tools, ``thinking``, ``context_management``, the moving
  ``cache_control`` of ``shared/claude-code-request-shape.json``), streaming, growing every
  turn with large tool results from :mod:`testkit.corpus.cases` (JSON, logs, grep, ...).
  Every turn checks that the stream is well formed and ends with ``message_stop``, and that
  the tool results the upstream received are byte for byte those of the previous turn
  (prefix stability: the mock's ``x-mock-tool-results-sha256`` receipt).
- :class:`OpenAIChat` -- Chat Completions with a function tool, streaming or not:
  tool call, tool result, follow-up; same shape and prefix checks.
- :class:`KeyBurst` -- short bursts of small requests from fresh API keys, larger than the
  per-key rate limit (``rpm`` bursts) or the per-key budget (``budget`` bursts, an expensive
  model).  A *native* 429 from Headroom is the expected answer there and counts as a success
  (recorded under ``burst: 429 rpm`` / ``burst: 429 budget``); anything else that is not a
  well-formed 200 is a failure.

Every other class uses a fresh API key per conversation, so the sessions never meet the rate
limit or the budget that the bursts run into.  The proxy limits these scenarios expect are in
:data:`EXPECTED_LIMITS`; ``load_tests/run.py`` starts the mock (with a model-like pace), Redis
and the proxy configured that way and runs this file headless.  By hand, always bounded::

    python load_tests/run.py --workers 2 --users 12 --spawn-rate 4 --run-time 60s --out load_out

Locust times a ``stream=True`` request only up to the response headers, so every complete,
well-formed stream also reports its full duration as an ``SSE`` entry.  Set
``HEADROOM_LOAD_COUNTERS`` to a file path to get the scenario counters (sessions, prefix
checks, 429s by kind, tokens saved) written there as JSON when the run stops, and
``HEADROOM_LOAD_EXTRA_HEADERS`` to a JSON object of headers added to every request (mock
control headers: ``{"x-mock-break-after": "4"}`` shows the checks failing broken streams).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import time
import uuid
from collections import Counter
from typing import Any

import gevent
import gevent.pool
from locust import HttpUser, between, events, task
from locust.runners import WorkerRunner

from testkit.corpus.cases import all_cases

HARD_LIMIT_S = float(os.environ.get("HEADROOM_LOCUST_HARD_LIMIT_S", "600"))

# What the proxy must be configured with for these scenarios (run.py passes exactly these).
EXPECTED_LIMITS = {"rpm": 30, "budget_usd": 3.0}
RPM_BURST = EXPECTED_LIMITS["rpm"] + 10  # an rpm burst: more requests than a minute allows at once
BUDGET_BURST = 16  # a budget burst: worst-case reservations far beyond the budget
BURST_CONCURRENCY = 8

SESSION_TOOL_RESULTS = 3  # a session: 2 turns per tool result (tool call, then its result)
MAX_TOOL_RESULT_CHARS = 100_000  # bigger corpus cases are cut at a line end
REPLY_CHARS = "160"  # x-mock-events: a longer text answer (40 tokens of model pace)

COUNTERS: Counter[str] = Counter()
# Extra headers on every request, e.g. '{"x-mock-break-after": "4"}' to see the checks catch broken streams.
EXTRA_HEADERS: dict[str, str] = json.loads(os.environ.get("HEADROOM_LOAD_EXTRA_HEADERS") or "{}")


@events.test_start.add_listener
def _hard_stop(environment, **_kwargs) -> None:
    """Safety net for a forgotten ``--run-time``: quit after HARD_LIMIT_S."""
    if not isinstance(environment.runner, WorkerRunner):
        gevent.spawn_later(HARD_LIMIT_S, environment.runner.quit)


@events.test_stop.add_listener
def _write_counters(environment, **_kwargs) -> None:
    path = os.environ.get("HEADROOM_LOAD_COUNTERS")
    if path:
        with open(path, "w") as f:
            json.dump(dict(COUNTERS), f, indent=1, sort_keys=True)


# --------------------------------------------------------------------------
# Request material (deterministic)
# --------------------------------------------------------------------------

_WORDS = ("the a proxy request token model cache stream session tool result user answer file test build "
          "error value config worker limit budget shared state compress keep line json log grep output "
          "when then if each every must should never always before after only").split()


def _prose(n: int, seed: int) -> str:
    """n characters of word salad (deterministic for a seed)."""
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < n:
        word = rng.choice(_WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:n]


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    end = text.rfind("\n", 0, limit)
    return text[: end if end > 0 else limit]


CASES = [_cut(c.content, MAX_TOOL_RESULT_CHARS) for c in all_cases()]
QUESTIONS = [c.question for c in all_cases()]

# The tool list and system prompt of a real Claude Code request, texts replaced by filler of
# the same length (shared/claude-code-request-shape.json).
_CC_TOOLS = (("Agent", 5454), ("Bash", 10397), ("CronCreate", 2924), ("CronDelete", 167), ("CronList", 106),
             ("Edit", 1094), ("EnterWorktree", 3031), ("ExitWorktree", 1923), ("NotebookEdit", 619),
             ("Read", 1830), ("ReportFindings", 574), ("ScheduleWakeup", 2802), ("SendMessage", 655),
             ("Skill", 1713), ("TaskCreate", 2146), ("TaskGet", 732), ("TaskList", 998), ("TaskOutput", 1049),
             ("TaskStop", 203), ("TaskUpdate", 2243), ("WebFetch", 1479), ("WebSearch", 1321),
             ("Workflow", 18780), ("Write", 618))
CC_TOOLS = [{"name": name, "description": _prose(size, i),
             "input_schema": {"type": "object", "properties": {"command": {"type": "string"},
                                                               "description": {"type": "string"}},
                              "required": ["command", "description"], "additionalProperties": False,
                              "$schema": "http://json-schema.org/draft-07/schema#"}}
            for i, (name, size) in enumerate(_CC_TOOLS)]
CC_SYSTEM = [
    {"type": "text", "text": _prose(74, 100)},
    {"type": "text", "text": _prose(62, 101), "cache_control": {"type": "ephemeral"}},
    {"type": "text", "text": _prose(26407, 102), "cache_control": {"type": "ephemeral"}},
]
CC_FIRST_USER = [
    {"type": "text", "text": "<system-reminder>\n" + _prose(1750, 103) + "\n</system-reminder>"},
    {"type": "text", "text": "<system-reminder>\n" + _prose(4520, 104) + "\n</system-reminder>"},
    {"type": "text", "text": _prose(306, 105)},
]
CC_HEADERS = {
    "accept": "application/json",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": ("claude-code-20250219,interleaved-thinking-2025-05-14,thinking-token-count-2026-05-13,"
                       "context-management-2025-06-27,prompt-caching-scope-2026-01-05"),
    "anthropic-dangerous-direct-browser-access": "true",
    "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
    "x-app": "cli",
    "x-stainless-lang": "js",
    "x-stainless-package-version": "0.94.0",
    "x-stainless-retry-count": "0",
    "x-stainless-runtime": "node",
    "x-stainless-timeout": "600",
}


# --------------------------------------------------------------------------
# Checks: each returns an error string, or None when the answer is well formed
# --------------------------------------------------------------------------


class Broken(Exception):
    """An answer that is not what a real provider would send."""


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Broken(f"{what} is not JSON: {text[:120]!r}") from exc


def read_anthropic_stream(resp) -> tuple[list[dict], int]:
    """Read an Anthropic SSE stream to its end; the content blocks it built and its size.

    Raises :class:`Broken` unless it is message_start ... message_stop, every data line JSON
    whose ``type`` matches its ``event:`` line, blocks opened and closed in order, no error
    event."""
    size = 0
    event = None
    seen: list[str] = []
    blocks: list[dict] = []
    partial: dict[int, str] = {}
    open_block: int | None = None
    for raw in resp.iter_lines():
        size += len(raw) + 1
        line = raw.decode("utf-8")
        if not line or line.startswith(":"):
            continue
        if line.startswith("event: "):
            event = line[7:]
            continue
        if not line.startswith("data: "):
            raise Broken(f"unexpected SSE line {line[:80]!r}")
        data = _json(line[6:], "SSE data")
        kind = data.get("type")
        if kind != event:
            raise Broken(f"data type {kind!r} under event {event!r}")
        if kind == "error":
            raise Broken(f"error event in stream: {line[:200]}")
        if seen and seen[-1] == "message_stop":
            raise Broken("data after message_stop")
        if not seen and kind != "message_start":
            raise Broken(f"stream starts with {kind!r}")
        seen.append(kind)
        if kind == "content_block_start":
            if open_block is not None or data.get("index") != len(blocks):
                raise Broken(f"content_block_start out of order: {line[:120]}")
            open_block = data["index"]
            blocks.append(dict(data["content_block"]))
        elif kind == "content_block_delta":
            if data.get("index") != open_block:
                raise Broken("delta for a block that is not open")
            delta = data["delta"]
            if delta.get("type") == "text_delta":
                blocks[open_block]["text"] = blocks[open_block].get("text", "") + delta["text"]
            elif delta.get("type") == "input_json_delta":
                partial[open_block] = partial.get(open_block, "") + delta["partial_json"]
        elif kind == "content_block_stop":
            if data.get("index") != open_block:
                raise Broken("content_block_stop for a block that is not open")
            if open_block in partial:
                blocks[open_block]["input"] = _json(partial[open_block], "tool input")
            open_block = None
        elif kind == "message_delta":
            if not data.get("delta", {}).get("stop_reason") or "output_tokens" not in data.get("usage", {}):
                raise Broken(f"message_delta without stop_reason/usage: {line[:160]}")
    if not seen or seen[-1] != "message_stop":
        raise Broken(f"stream ended without message_stop (last: {seen[-1] if seen else None!r})")
    if open_block is not None or not blocks:
        raise Broken("stream ended with an open block or no content")
    return blocks, size


def check_anthropic_message(data: Any) -> list[dict]:
    if not (isinstance(data, dict) and data.get("type") == "message" and data.get("role") == "assistant"
            and isinstance(data.get("content"), list) and data["content"] and data.get("stop_reason")
            and isinstance(data.get("usage"), dict) and "output_tokens" in data["usage"]):
        raise Broken(f"not an Anthropic message: {str(data)[:200]}")
    return data["content"]


def read_openai_stream(resp, include_usage: bool) -> tuple[dict, int]:
    """Read a Chat Completions stream to ``[DONE]``; the assembled message and its size."""
    size = 0
    done = False
    usage = None
    finish = None
    message: dict[str, Any] = {"role": None, "content": "", "tool_calls": {}}
    for raw in resp.iter_lines():
        size += len(raw) + 1
        line = raw.decode("utf-8")
        if not line or line.startswith(":"):
            continue
        if not line.startswith("data: "):
            raise Broken(f"unexpected SSE line {line[:80]!r}")
        if done:
            raise Broken("data after [DONE]")
        if line == "data: [DONE]":
            done = True
            continue
        chunk = _json(line[6:], "SSE data")
        if "error" in chunk:
            raise Broken(f"error chunk in stream: {line[:200]}")
        if chunk.get("object") != "chat.completion.chunk":
            raise Broken(f"not a chat.completion.chunk: {line[:120]}")
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            message["role"] = message["role"] or delta.get("role")
            message["content"] += delta.get("content") or ""
            for call in delta.get("tool_calls") or ():
                slot = message["tool_calls"].setdefault(call["index"], {"id": None, "name": "", "arguments": ""})
                slot["id"] = slot["id"] or call.get("id")
                fn = call.get("function") or {}
                slot["name"] += fn.get("name") or ""
                slot["arguments"] += fn.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    if not done:
        raise Broken("stream ended without [DONE]")
    if message["role"] != "assistant" or not finish:
        raise Broken(f"stream without role or finish_reason (role {message['role']!r}, finish {finish!r})")
    if include_usage and not usage:
        raise Broken("include_usage asked for, no usage chunk")
    calls = [{"id": c["id"], "type": "function",
              "function": {"name": c["name"], "arguments": c["arguments"]}}
             for _, c in sorted(message["tool_calls"].items())]
    for call in calls:
        _json(call["function"]["arguments"], "tool call arguments")
    return {"role": "assistant", "content": message["content"] or None, "tool_calls": calls, "finish": finish}, size


def check_openai_completion(data: Any) -> dict:
    try:
        choice = data["choices"][0]
        message = choice["message"]
        ok = (data["object"] == "chat.completion" and message["role"] == "assistant" and choice["finish_reason"]
              and data["usage"]["total_tokens"] > 0)
    except (KeyError, IndexError, TypeError):
        ok = False
    if not ok:
        raise Broken(f"not a chat.completion: {str(data)[:200]}")
    for call in message.get("tool_calls") or ():
        _json(call["function"]["arguments"], "tool call arguments")
    return {"role": "assistant", "content": message.get("content"), "tool_calls": message.get("tool_calls") or [],
            "finish": choice["finish_reason"]}


def check_prefix(before: list[str], after: list[str]) -> None:
    """Turn N+1 must carry turn N's tool results exactly as the upstream received them on turn N."""
    if after[: len(before)] != before:
        changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
        raise Broken(f"prefix not stable: tool results {changed or 'missing'} changed between turns "
                     f"({before} -> {after})")
    COUNTERS["prefix_checks"] += 1


def digests(resp) -> list[str]:
    value = resp.headers.get("x-mock-tool-results-sha256")
    if value is None:
        raise Broken("no x-mock-tool-results-sha256 receipt (did the answer come from the mock?)")
    return [d for d in value.split(",") if d]


def _receipts(resp) -> None:
    saved = resp.headers.get("x-headroom-tokens-saved")
    if saved and saved.isdigit():
        COUNTERS["tokens_saved"] += int(saved)
        COUNTERS["requests_compressed"] += int(saved) > 0


def _sse_timing(user: HttpUser, name: str, start: float, size: int) -> None:
    user.environment.events.request.fire(request_type="SSE", name=name,
                                         response_time=(time.perf_counter() - start) * 1000,
                                         response_length=size, exception=None, context={})


# --------------------------------------------------------------------------
# Claude Code sessions
# --------------------------------------------------------------------------


def _without_cache_control(block: dict) -> dict:
    return {k: v for k, v in block.items() if k != "cache_control"}


class ClaudeCodeSession(HttpUser):
    """One Claude Code session after another: a question, then tool call / tool result turns
    that grow the conversation, streaming, ``cache_control`` moving to the newest block."""

    weight = 3
    wait_time = between(0.3, 1.5)  # the user (or the tool) thinking between turns
    _ids = itertools.count()

    def on_start(self) -> None:
        self.rng = random.Random(next(self._ids))
        self.new_session()

    def new_session(self) -> None:
        self.session = str(uuid.uuid4())
        self.key = f"sk-ant-load-cc-{self.session}"  # fresh key: sessions stay clear of the limits
        self.messages: list[dict] = []
        self.results = 0
        self.pending_tool: dict | None = None
        self.receipt: list[str] | None = None
        first = [*CC_FIRST_USER, {"type": "text", "text": f"[{self.session}] {self.rng.choice(QUESTIONS)}"}]
        self.messages.append({"role": "user", "content": first})
        COUNTERS["cc_sessions"] += 1

    def body(self) -> dict:
        # Claude Code marks only the newest block of the conversation (plus the system prompt).
        messages = [{"role": m["role"], "content": [_without_cache_control(b) for b in m["content"]]}
                    for m in self.messages]
        last = messages[-1]["content"]
        last[-1] = {**last[-1], "cache_control": {"type": "ephemeral"}}
        return {"model": "claude-sonnet-4-5", "messages": messages, "system": CC_SYSTEM, "tools": CC_TOOLS,
                "metadata": {"user_id": f"user_{self.session}"}, "max_tokens": 32000,
                "thinking": {"budget_tokens": 31999, "type": "enabled"},
                "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
                "stream": True}

    @task
    def turn(self) -> None:
        headers = {**CC_HEADERS, "x-api-key": self.key, "x-claude-code-session-id": self.session,
                   "x-mock-events": REPLY_CHARS, **EXTRA_HEADERS}
        name = "cc: /v1/messages stream"
        start = time.perf_counter()
        with self.client.post("/v1/messages", json=self.body(), headers=headers, stream=True,
                              name=name, catch_response=True) as resp:
            try:
                if resp.status_code != 200:
                    raise Broken(f"HTTP {resp.status_code}: {resp.text[:200]}")
                receipt = digests(resp)
                blocks, size = read_anthropic_stream(resp)
                if self.receipt is not None:
                    check_prefix(self.receipt, receipt)
            except Broken as exc:
                resp.failure(str(exc))
                self.new_session()
                return
            except Exception as exc:  # noqa: BLE001 - a broken connection is a failed request, the user lives on
                resp.failure(f"{type(exc).__name__}: {exc}")
                self.new_session()
                return
            resp.success()
        _receipts(resp)
        _sse_timing(self, "cc: full stream", start, size)
        self.advance(blocks, receipt)

    def advance(self, blocks: list[dict], receipt: list[str]) -> None:
        self.receipt = receipt
        self.messages.append({"role": "assistant", "content": blocks})
        tool_uses = [b for b in blocks if b.get("type") == "tool_use"]
        if tool_uses:
            if self.results >= SESSION_TOOL_RESULTS:
                COUNTERS["cc_sessions_completed"] += 1
                self.new_session()
                return
            use = tool_uses[0]
            self.results += 1
            self.messages.append({"role": "user", "content": [
                {"tool_use_id": use["id"], "type": "tool_result", "content": self.rng.choice(CASES),
                 "is_error": False}]})
        else:
            self.messages.append({"role": "user", "content": [
                {"type": "text", "text": f"[{self.session}] next: {self.rng.choice(QUESTIONS)}"}]})


# --------------------------------------------------------------------------
# OpenAI Chat Completions with tools
# --------------------------------------------------------------------------

OPENAI_TOOLS = [{"type": "function", "function": {
    "name": "query_api", "description": "Query the internal API and return its raw output.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]


class OpenAIChat(HttpUser):
    """Tool call, tool result, follow-up: one conversation per task, streaming or not."""

    weight = 2
    wait_time = between(0.3, 1.5)
    _ids = itertools.count(1000)

    def on_start(self) -> None:
        self.rng = random.Random(next(self._ids))

    def ask(self, body: dict, key: str, stream: bool, step: str) -> tuple[dict, list[str]] | None:
        body = {**body, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        name = f"openai: /v1/chat/completions {'stream' if stream else 'json'}"
        start = time.perf_counter()
        with self.client.post("/v1/chat/completions", json=body, stream=stream, name=name, catch_response=True,
                              headers={"authorization": f"Bearer {key}", "x-mock-events": REPLY_CHARS,
                                       **EXTRA_HEADERS}) as resp:
            try:
                if resp.status_code != 200:
                    raise Broken(f"HTTP {resp.status_code}: {resp.text[:200]}")
                receipt = digests(resp)
                if stream:
                    message, size = read_openai_stream(resp, include_usage=True)
                else:
                    message, size = check_openai_completion(_json(resp.text, "body")), len(resp.content)
                want = "tool_calls" if step == "call" else "stop"
                if message["finish"] != want:
                    raise Broken(f"finish_reason {message['finish']!r}, expected {want!r}")
            except Exception as exc:  # noqa: BLE001 - any broken answer is a failed request
                resp.failure(f"{type(exc).__name__}: {exc}" if not isinstance(exc, Broken) else str(exc))
                return None
            resp.success()
        _receipts(resp)
        if stream:
            _sse_timing(self, "openai: full stream", start, size)
        return message, receipt

    @task
    def conversation(self) -> None:
        conv = uuid.uuid4().hex
        key = f"sk-load-oa-{conv}"
        stream = self.rng.random() < 0.5
        messages: list[dict] = [
            {"role": "system", "content": "You are a helpful operations assistant for Acme's storefront."},
            {"role": "user", "content": f"[{conv}] {self.rng.choice(QUESTIONS)}"},
        ]
        body = {"model": "gpt-4o-mini", "messages": messages, "tools": OPENAI_TOOLS}
        got = self.ask(body, key, stream, "call")
        if got is None:
            return
        call = got[0]["tool_calls"][0]
        messages.append({"role": "assistant", "content": None, "tool_calls": got[0]["tool_calls"]})
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": self.rng.choice(CASES)})
        got = self.ask(body, key, stream, "answer")
        if got is None:
            return
        first_receipt = got[1]
        messages.append({"role": "assistant", "content": got[0]["content"]})
        messages.append({"role": "user", "content": f"[{conv}] and then? {self.rng.choice(QUESTIONS)}"})
        got = self.ask(body, key, stream, "call")
        if got is None:
            return
        try:
            check_prefix(first_receipt, got[1])
        except Broken as exc:
            self.environment.events.request.fire(request_type="CHECK", name="openai: prefix stability",
                                                 response_time=0, response_length=0, exception=exc, context={})
            return
        COUNTERS["openai_conversations"] += 1


# --------------------------------------------------------------------------
# Bursts from many keys
# --------------------------------------------------------------------------


def native_429(resp, anthropic: bool) -> str | None:
    """'rpm' / 'budget' for a well-formed refusal from Headroom, None otherwise."""
    if resp.headers.get("x-headroom-error") != "1":
        return None
    try:
        data = resp.json()
    except ValueError:
        return None
    if anthropic:
        ok = data.get("type") == "error" and data.get("error", {}).get("type") == "rate_limit_error"
        message = data.get("error", {}).get("message", "")
    else:
        err = data.get("error") or {}
        ok = bool(err.get("type")) and err.get("code") in ("rate_limit_exceeded", "insufficient_quota")
        message = err.get("message", "")
    if not ok:
        return None
    if "budget" in message:
        return "budget" if resp.headers.get("x-should-retry") == "false" else None
    return "rpm" if resp.headers.get("retry-after", "").isdigit() else None


class KeyBurst(HttpUser):
    """A short burst from a fresh key, then a pause: over the rate limit, or over the budget."""

    weight = 1
    wait_time = between(1.0, 3.0)
    _ids = itertools.count(2000)

    def on_start(self) -> None:
        self.rng = random.Random(next(self._ids))
        self.kinds = itertools.cycle(("rpm", "budget"))

    def one(self, kind: str, anthropic: bool, key: str, i: int) -> None:
        marker = f"{key} #{i}"
        if anthropic:
            path, headers = "/v1/messages", {"x-api-key": key, "anthropic-version": "2023-06-01"}
            if kind == "budget":  # an expensive model, a large prompt: the worst case is reserved
                body = {"model": "claude-opus-4-1", "max_tokens": 16000,
                        "messages": [{"role": "user", "content": f"{marker} {_prose(20_000, i)}"}]}
            else:
                body = {"model": "claude-3-5-haiku-latest", "max_tokens": 64,
                        "messages": [{"role": "user", "content": f"{marker} ping"}]}
        else:
            path, headers = "/v1/chat/completions", {"authorization": f"Bearer {key}"}
            if kind == "budget":
                body = {"model": "o1", "max_completion_tokens": 32000,
                        "messages": [{"role": "user", "content": f"{marker} {_prose(20_000, i)}"}]}
            else:
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{marker} ping"}]}
        with self.client.post(path, json=body, headers={**headers, **EXTRA_HEADERS}, name=f"burst: {kind}",
                              catch_response=True) as resp:
            try:
                if resp.status_code == 429:
                    refused = native_429(resp, anthropic)
                    if refused is None:
                        raise Broken(f"429 that is not a native Headroom refusal: {resp.headers} {resp.text[:200]}")
                    resp.request_meta["name"] = f"burst: 429 {refused}"
                    COUNTERS[f"burst_429_{refused}"] += 1
                elif resp.status_code != 200:
                    raise Broken(f"HTTP {resp.status_code}: {resp.text[:200]}")
                elif anthropic:
                    check_anthropic_message(resp.json())
                else:
                    check_openai_completion(resp.json())
            except Exception as exc:  # noqa: BLE001 - any broken answer is a failed request
                resp.failure(str(exc) if isinstance(exc, Broken) else f"{type(exc).__name__}: {exc}")
                return
            resp.success()

    @task
    def burst(self) -> None:
        kind = next(self.kinds)
        anthropic = self.rng.random() < 0.5
        key = f"{'sk-ant-' if anthropic else 'sk-'}burst-{uuid.uuid4().hex}"
        count = RPM_BURST if kind == "rpm" else BUDGET_BURST
        pool = gevent.pool.Pool(BURST_CONCURRENCY)
        for i in range(count):
            pool.spawn(self.one, kind, anthropic, key, i)
        pool.join(timeout=120)
        pool.kill(block=False)
        COUNTERS[f"bursts_{kind}"] += 1


def sha(text: str) -> str:
    """The mock's digest of a string tool result (for debugging a prefix failure by hand)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]
