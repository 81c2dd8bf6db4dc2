"""Prefix stability through the real proxy: a block sent on an earlier turn never changes.

A 15-turn agent session (JSON, log, grep and table tool outputs from the corpus, a new
question every turn), in each wire format (Anthropic Messages, OpenAI Chat Completions, the
Responses API as Codex sends it), goes through ``headroom proxy --workers 2`` on Redis, while the memo is wiped
twice (forcing recompression) and a worker is SIGKILLed. The upstream must receive every
earlier message byte for byte and ``headroom_prefix_changes_total`` must stay 0. Then a
tampered memo entry proves the counter counts (once) and the warning names the request.
"""

from __future__ import annotations

import json
import os
import re
import signal

import httpx
import pytest
import redis

from testkit import processes
from testkit.corpus.cases import all_cases, anthropic_body
from testkit.waiting import wait_for

KINDS = ("k8s_pods_json", "pytest_failure_log", "grep_results", "endpoint_latency_json", "tsc_build_log",
         "kubectl_pods_table", "npm_install_log")


def _cases():
    by_name = {c.name: c for c in all_cases()}
    return [by_name[name] for name in KINDS if name in by_name]


def _turns(n: int, wire: str = "anthropic") -> list[dict]:
    """n growing request bodies; turn i adds one tool call, its output and a new question,
    in the wire format's own shape: Anthropic Messages, OpenAI Chat Completions, or the
    Responses API as Codex sends it."""
    cases = _cases()
    assert len(cases) == len(KINDS)
    if wire == "anthropic":
        body = anthropic_body(cases[0])
        body["messages"] = body["messages"][:1]
    elif wire == "openai":
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": cases[0].question}]}
    else:
        body = {"model": "gpt-5-codex", "store": False, "prompt_cache_key": "session-1",
                "input": [{"type": "message", "role": "user",
                           "content": [{"type": "input_text", "text": cases[0].question}]}]}
    turns = []
    for i in range(n):
        case = cases[i % len(cases)]
        call_id, question = f"call_{i:02d}", f"{case.question} (step {i})"
        if wire == "anthropic":
            for message in body["messages"]:  # the cache breakpoint moves to the newest tool output
                for part in message["content"] if isinstance(message["content"], list) else []:
                    part.pop("cache_control", None)
            body["messages"] += [
                {"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": case.tool,
                                                   "input": case.tool_input}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": call_id, "content": case.content,
                     "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": question}]},
            ]
        elif wire == "openai":
            body["messages"] += [
                {"role": "assistant", "content": None, "tool_calls": [{
                    "id": call_id, "type": "function",
                    "function": {"name": case.tool, "arguments": json.dumps(case.tool_input)}}]},
                {"role": "tool", "tool_call_id": call_id, "content": case.content},
                {"role": "user", "content": question},
            ]
        else:
            body["input"] += [
                {"type": "function_call", "call_id": call_id, "name": case.tool,
                 "arguments": json.dumps(case.tool_input)},
                {"type": "function_call_output", "call_id": call_id, "output": case.content},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": question}]},
            ]
        turns.append(json.loads(json.dumps({**body, "stream": False})))
    return turns


_PATHS = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions", "responses": "/v1/responses"}


def _send(proxy, body: dict, key: str, wire: str = "anthropic") -> httpx.Response:
    headers = ({"x-api-key": key, "anthropic-version": "2023-06-01"} if wire == "anthropic"
               else {"authorization": f"Bearer {key}"})
    response = httpx.post(f"{proxy.url}{_PATHS[wire]}", json=body, timeout=30, headers=headers)
    assert response.status_code == 200, response.text
    return response


def _upstream_messages(mock, wire: str = "anthropic") -> list[str]:
    """Each message (Responses: input item) the upstream got, as sent, less the breakpoint the
    client itself moves."""
    sent = json.loads(mock.last()["body"].encode("latin-1"))
    items = sent["input"] if wire == "responses" else sent["messages"]
    for message in items:
        for part in message.get("content") if isinstance(message.get("content"), list) else []:
            part.pop("cache_control", None)
    return [json.dumps(m, ensure_ascii=False) for m in items]


def _prefix_metric(proxy) -> float:
    text = httpx.get(f"{proxy.url}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(r"^headroom_prefix_changes_total\{[^}]*\} (\S+)$", text, re.M))


def _stats(proxy) -> dict:
    return httpx.get(f"{proxy.url}/stats", timeout=10).json()


@pytest.fixture(scope="module")
def guarded(start_proxy, redis_server):
    return start_proxy("--workers", "2", "--redis-url", redis_server.url, "--no-cache", "--no-rate-limit")


@pytest.fixture(scope="module")
def rdb(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def _memo_keys(rdb) -> set[bytes]:
    return set(rdb.scan_iter(match="hr:memo:*", count=1000))


@pytest.mark.parametrize("wire", ["anthropic", "openai", "responses"])
def test_a_long_session_keeps_every_earlier_block_byte_for_byte(guarded, rdb, fresh_mock, wire):
    wait_for(lambda: len(processes.live_workers(guarded.output())) == 2, timeout=20, what="two workers")
    start = _stats(guarded)  # the stats live in Redis, shared with other tests of the session
    saved = 0
    previous: list[str] = []
    for i, turn in enumerate(_turns(15, wire)):
        if i in (5, 11):  # the memo is gone (evicted, flushed): every old block is compressed again
            keys = _memo_keys(rdb)
            assert keys
            rdb.delete(*keys)
        if i == 8:  # a worker dies mid-session; the watchdog replaces it
            victim = sorted(processes.live_workers(guarded.output()))[0]
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda v=victim: (workers := processes.live_workers(guarded.output())) and len(workers) == 2
                     and v not in workers, timeout=30, what="a replacement worker")
        response = _send(guarded, turn, f"sk-prefix-long-{wire}", wire)
        saved += int(response.headers["x-headroom-tokens-saved"])
        sent = _upstream_messages(fresh_mock, wire)
        assert sent[:len(previous)] == previous, f"turn {i}: an earlier message changed"
        previous = sent
    assert saved > 0  # it did compress
    assert _memo_keys(rdb)  # and the wiped memo was written again
    # The killed worker's unflushed figures die with it: count on the turns after the kill.
    wait_for(lambda: _stats(guarded)["total_requests"] >= start["total_requests"] + 7, timeout=10,
             what="stats flushed")
    assert _stats(guarded)["prefix_changes"] == start["prefix_changes"] == 0
    assert _prefix_metric(guarded) == 0
    assert "prefix change" not in guarded.output()


def test_a_tampered_memo_entry_is_counted_once_and_logged_with_the_request_id(guarded, rdb, fresh_mock):
    turns = _turns(4)
    start = _stats(guarded)
    before = _memo_keys(rdb)
    _send(guarded, turns[0], "sk-ant-prefix-tamper")
    mine = _memo_keys(rdb) - before
    tampered = 0
    for key in mine:
        entry = json.loads(rdb.get(key))
        if entry[1] is not None:  # a compressed block: change what the memo says was sent
            entry[1] += "\n(tampered)"
            rdb.set(key, json.dumps(entry), keepttl=True)
            tampered += 1
    assert tampered == 1
    response = _send(guarded, turns[1], "sk-ant-prefix-tamper")
    request_id = response.headers["x-headroom-request-id"]
    assert "(tampered)" in fresh_mock.last()["body"].encode("latin-1").decode()
    wait_for(lambda: _stats(guarded)["prefix_changes"] == start["prefix_changes"] + 1, timeout=10,
             what="the change counted")
    assert _prefix_metric(guarded) == 1
    assert _stats(guarded)["prefix_changes_by_provider"]["anthropic"] >= 1
    wait_for(lambda: re.search(rf"prefix change: request {re.escape(request_id)} ", guarded.output()),
             timeout=5, what="the warning")
    _send(guarded, turns[2], "sk-ant-prefix-tamper")  # sent as last time: no new break
    _send(guarded, turns[3], "sk-ant-prefix-tamper")
    wait_for(lambda: _stats(guarded)["total_requests"] >= start["total_requests"] + 4, timeout=10,
             what="stats flushed")
    assert _stats(guarded)["prefix_changes"] == start["prefix_changes"] + 1
    assert _prefix_metric(guarded) == 1


def test_stats_report_the_prompt_cache_read_share(guarded, fresh_mock):
    turns = _turns(1)
    usage = json.dumps({"input_tokens": 100, "cache_read_input_tokens": 300, "cache_creation_input_tokens": 100})
    response = httpx.post(f"{guarded.url}/v1/messages", json=turns[0], timeout=30,
                          headers={"x-api-key": "sk-ant-share", "anthropic-version": "2023-06-01",
                                   "x-mock-usage": usage})
    assert response.status_code == 200
    row = wait_for(lambda: (r := _stats(guarded)["prompt_cache"].get("anthropic")) and r["read_tokens"] >= 300 and r,
                   timeout=10, what="the cache reads counted")
    assert row["input_tokens"] >= 500
    assert row["read_share"] == round(row["read_tokens"] / row["input_tokens"], 4)
