"""The retrieval tool over whole sessions (Anthropic Messages).

- A 15-turn agent session through ``headroom proxy --workers 2`` on Redis, with retrievals in
  JSON and in streams, alone and mixed with the client's own calls: every upstream request's
  ``messages`` begin with the exact bytes of the one before (the prompt cache never breaks),
  the tool list is the same bytes every time, and ``headroom_prefix_changes_total`` stays 0.
- The real Claude Code CLI reads a log through its Bash tool; Headroom compresses it, the
  model (the mock) retrieves the line it needs, and Claude Code prints a normal answer: once
  through the proxy's own tool, once (``--retrieval-tool off``) through ``headroom mcp``,
  which Claude Code runs as an MCP server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import anthropic
import httpx
import pytest

from headroom.transforms.retrieval import TOOL_NAME
from testkit import ROOT
from testkit.leftovers import SESSION_ENV
from testkit.waiting import wait_for

from .test_retrieval_anthropic import BASH, MODEL, raw_messages, service_log

NPM_BIN = ROOT / "npm" / "node_modules" / ".bin"


def fact_line(i: int) -> str:
    return f"2024-05-01T11:{i:02d}:07Z INFO worker-{i % 7} promoted build R{i:02d}-PELICAN to canary"


def tool_turn(i: int, question: str) -> list[dict]:
    """The client's history of one step: a question, the model's call to Bash, and its output."""
    call_id = f"toolu_step{i:02d}"
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": "Bash",
                                           "input": {"command": f"cat step{i}.log"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id,
                                      "content": service_log(fact_line(i), lines=400 + i, at=150 + i)}]},
    ]


def as_sent(message) -> dict:
    return {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in message.content]}


def raw_tools(recorded: dict) -> bytes:
    text = recorded["body"]
    start = text.index('"tools":') + len('"tools":')
    _, end = json.JSONDecoder().raw_decode(text, start)
    return text[start:end].encode("latin-1")


@pytest.fixture(scope="module")
def shared(start_proxy, module_redis):
    # The learning back-off off: with it, Bash's outputs, retrieved often here, would soon be
    # compressed losslessly only, and the later turns would have nothing left to retrieve.
    return start_proxy("--workers", "2", "--redis-url", module_redis.url, "--no-cache", "--no-rate-limit",
                       "--retrieval-backoff", "0")


# Turn -> how it goes: "hidden" (the fact was compressed away: the model retrieves it), "mixed"
# (it retrieves and calls Bash in one answer), "kept" (the fact survived compression).
PLAN = {0: "hidden", 2: "kept", 3: "hidden", 5: "mixed", 7: "kept", 8: "hidden", 10: "mixed", 12: "hidden",
        13: "kept"}


def test_fifteen_turns_with_retrievals_keep_every_upstream_prefix_byte_for_byte(shared, fresh_mock):
    client = anthropic.Anthropic(base_url=shared.url, api_key="sk-ant-session", max_retries=0)
    messages: list[dict] = []
    retrieved = 0
    for i in range(15):
        how = PLAN.get(i, "kept")
        messages += tool_turn(i, "Anything odd in there?")
        fact = f"R{i:02d}-PELICAN" if how != "kept" else "handled request 1000 in 10ms"
        headers = {"x-mock-seek": fact, **({"x-mock-mixed": "Bash"} if how == "mixed" else {})}
        stream = i % 2 == 1
        answer = ask(client, stream, messages, headers)
        if how == "mixed":
            bash = next(block for block in answer.content if block.type == "tool_use")
            messages += [as_sent(answer), {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": bash.id, "content": "ok"}]}]
            answer = ask(client, stream, messages, headers)
        assert answer.content[-1].text.startswith("Found: ") and fact in answer.content[-1].text, (i, answer)
        assert TOOL_NAME not in answer.model_dump_json()
        retrieved += how != "kept"
        messages.append(as_sent(answer))
    recorded = [r for r in fresh_mock.requests() if r["path"] == "/v1/messages"]
    # One request a turn, and one more for each retrieval: a continuation, or the client's next
    # request after a mixed answer.
    assert len(recorded) == 15 + retrieved
    tools = {raw_tools(r) for r in recorded}
    assert len(tools) == 1  # the same tool list, retrieval tool included, byte for byte every time
    previous = b""
    for n, r in enumerate(recorded):
        current = raw_messages(r)
        assert current.startswith(previous[:-1]), f"upstream request {n} changed an earlier message"
        previous = current
    stats = wait_for(lambda: (s := httpx.get(f"{shared.url}/stats", timeout=10).json())["retrieval_loop"]
                     ["retrievals"] >= retrieved and s, timeout=15, what="stats flushed")
    assert stats["prefix_changes"] == 0
    metrics = httpx.get(f"{shared.url}/metrics", timeout=10).text
    assert sum(float(v) for v in re.findall(r"^headroom_prefix_changes_total\{[^}]*\} (\S+)$", metrics, re.M)) == 0


def ask(client, stream: bool, messages: list[dict], headers: dict):
    arguments = {"model": MODEL, "max_tokens": 256, "tools": [BASH], "messages": messages, "extra_headers": headers}
    if not stream:
        return client.messages.create(**arguments)
    with client.messages.stream(**arguments) as events:
        return events.get_final_message()


def require_claude():
    claude = NPM_BIN / "claude"
    if not claude.exists():
        if os.environ.get("HEADROOM_REQUIRE_CLAUDE") == "1":
            pytest.fail("the claude CLI is not installed; HEADROOM_REQUIRE_CLAUDE=1", pytrace=False)
        pytest.skip("the claude CLI is not installed (scripts/test.sh installs it into npm/)")
    return claude


def claude_in(tmp_path, proxy, fact: str, seek: str, api_key: str):
    """A home and a project folder holding ``app.log`` (the fact's line deep inside), and Claude
    Code's environment: the proxy as its API, the mock steered to read the log with Bash first
    and then to seek ``seek`` (``x-mock-seek``), a word of the fact's line."""
    home = tmp_path / "home"
    work = home / "work"
    work.mkdir(parents=True)
    (work / "app.log").write_text(service_log(fact) + "\n")
    steer = [f"x-mock-seek: {seek}", "x-mock-call-first: Bash",
             'x-mock-tool-arguments: {"command": "cat app.log", "description": "Read the log"}']
    env = {
        "PATH": f"{NPM_BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(home), "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": proxy.url, "ANTHROPIC_API_KEY": api_key,
        "ANTHROPIC_CUSTOM_HEADERS": "\n".join(steer),
        "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    return work, env


def upstream_bodies(mock) -> list[dict]:
    return [json.loads(r["body"].encode("latin-1")) for r in mock.requests() if r["path"] == "/v1/messages"]


def test_claude_code_gets_a_normal_answer_when_the_model_retrieves(start_proxy, fresh_mock, tmp_path):
    claude = require_claude()
    proxy = start_proxy("--no-cache", "--no-rate-limit")
    fact = "2024-05-01T10:03:37Z INFO worker-3 rotated credentials, build tag ZEBRA-4417 now live"
    work, env = claude_in(tmp_path, proxy, fact, "ZEBRA-4417", "sk-ant-claude-code")
    run = subprocess.run([str(claude), "-p", "Summarise app.log for me.", "--model", MODEL,
                          "--allowedTools", "Bash"], env=env, cwd=work, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    assert run.stdout.startswith("Found: ") and fact in run.stdout, run.stdout
    assert TOOL_NAME not in run.stdout and "error" not in run.stdout.lower()
    bodies = upstream_bodies(fresh_mock)
    compressed = [b for b in bodies if "[headroom:" in json.dumps(b)]
    assert compressed, "Claude Code's Bash output was not compressed"
    continuation = [b for b in bodies if len(b["messages"]) > 1 and b["messages"][-2]["role"] == "assistant" and any(
        block.get("name") == TOOL_NAME for block in b["messages"][-2]["content"] if isinstance(block, dict))]
    assert continuation and fact in json.dumps(continuation[0]["messages"][-1])
    assert all(any(t.get("name") == TOOL_NAME for t in b.get("tools", [])) for b in bodies if b.get("tools"))


MCP_TOOL = f"mcp__headroom__{TOOL_NAME}"  # headroom_retrieve as Claude Code names the MCP server's tool


def test_claude_code_retrieves_through_headroom_mcp_with_the_proxy_tool_off(start_proxy, fresh_mock, tmp_path):
    """``--retrieval-tool off``, and ``headroom mcp`` configured in Claude Code instead: the model
    calls the MCP server's tool, Claude Code runs it through ``headroom mcp``, which reads the
    original from the proxy's ``/v1/retrieve`` as the same caller (the API key Claude Code uses)."""
    claude = require_claude()
    proxy = start_proxy("--no-cache", "--no-rate-limit", "--retrieval-tool", "off")
    fact = "2024-05-01T10:04:41Z INFO worker-5 rotated credentials, build tag OKAPI-2291 now live"
    api_key = "sk-ant-claude-code-mcp"
    work, env = claude_in(tmp_path, proxy, fact, "OKAPI-2291", api_key)
    server = {"command": sys.executable, "args": ["-m", "headroom", "mcp", "--url", proxy.url],
              "env": {"ANTHROPIC_API_KEY": api_key, "PYTHONPATH": str(ROOT),
                      SESSION_ENV: os.environ.get(SESSION_ENV, "")}}
    config = work.parent / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"headroom": server}}))
    run = subprocess.run([str(claude), "-p", "Summarise app.log for me.", "--model", MODEL,
                          "--mcp-config", str(config), "--strict-mcp-config",
                          "--allowedTools", f"Bash {MCP_TOOL}"], env=env, cwd=work, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    assert run.stdout.startswith("Found: ") and fact in run.stdout, run.stdout
    assert "error" not in run.stdout.lower()
    bodies = upstream_bodies(fresh_mock)
    assert [b for b in bodies if "[headroom:" in json.dumps(b)], "Claude Code's Bash output was not compressed"
    # The proxy declared no tool of its own.
    assert not [b for b in bodies if TOOL_NAME in [t.get("name") for t in b.get("tools", [])]]
    calls = [block for b in bodies for m in b["messages"] if m["role"] == "assistant" and isinstance(m["content"], list)
             for block in m["content"] if block.get("type") == "tool_use"]
    # Claude Code defers MCP tools: the model loads it through ToolSearch, then calls it by Claude Code's name.
    assert {"query": f"select:{MCP_TOOL}"} in [c["input"] for c in calls if c["name"] == "ToolSearch"]
    retrieve = next(c for c in calls if c["name"] == MCP_TOOL)
    assert retrieve["input"]["query"] == "OKAPI-2291"
    results = [block for b in bodies for m in b["messages"] if m["role"] == "user" and isinstance(m["content"], list)
               for block in m["content"] if block.get("type") == "tool_result"
               and block.get("tool_use_id") == retrieve["id"]]
    assert results and fact in json.dumps(results[0]) and not results[0].get("is_error"), results
    retrievals = wait_for(lambda: (r := httpx.get(f"{proxy.url}/stats", timeout=10).json()["retrievals"])
                          ["by_outcome"]["ok"] >= 1 and r, timeout=15, what="the retrieval counted")
    assert retrievals["by_outcome"] == {"ok": 1, "miss": 0, "error": 0}  # through /v1/retrieve, as that caller
