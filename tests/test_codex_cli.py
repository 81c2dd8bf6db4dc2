"""The real Codex CLI (``@openai/codex`` from npm) through the proxy, against the mock upstream.

``scripts/test.sh`` installs it into ``npm/``. Without it these tests skip and say why; with
``HEADROOM_REQUIRE_CODEX=1`` (set by ``.ci/run``) they fail instead.

Codex talks the Responses API. Two ways a user points it at Headroom, both tested:

- a custom provider (``model_providers.headroom``, ``wire_api = "responses"``): plain HTTP;
- OpenAI's built-in provider with ``openai_base_url``: Codex first asks for a WebSocket
  (``GET /v1/responses``, ``Upgrade: websocket``); Headroom answers 426 and Codex goes on
  over HTTP at once, without its five reconnects.

The mock answers the first request with a call to Codex's first tool (``exec_command``),
whose arguments the test chooses (``x-mock-tool-arguments``, sent by Codex itself through
the provider's ``http_headers``); Codex runs the command, sends its output back as a
``function_call_output`` and the mock's answer echoes what it received.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import httpx
import pytest

from headroom.formats.base import dumps
from testkit import ROOT
from testkit.waiting import wait_for

_NPM_CODEX = ROOT / "npm" / "node_modules" / ".bin" / "codex"  # where scripts/test.sh installs it
CODEX = str(_NPM_CODEX) if _NPM_CODEX.exists() else shutil.which("codex")
REQUIRE_ENV = "HEADROOM_REQUIRE_CODEX"
MODEL = "gpt-5-codex"
QUESTION = "Which order failed, and why?"

# What the command prints: 150 orders as pretty JSON (about 24 KB), one of them failed.
ORDERS_SCRIPT = """\
import json, random
rng = random.Random(7)
orders = [{"id": f"ord_{k:05d}", "status": "paid", "amount_cents": rng.randrange(900, 48000),
           "currency": "eur", "customer": f"cus_{rng.randrange(16**8):08x}", "failure_code": None}
          for k in range(150)]
orders[97].update(status="payment_failed", failure_code="insufficient_funds")
print(json.dumps(orders, indent=2))
"""


def _require_codex() -> str:
    if CODEX is None:
        message = "the Codex CLI is not installed (scripts/test.sh installs @openai/codex into npm/)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message}; {REQUIRE_ENV}=1", pytrace=False)
        pytest.skip(message)
    return CODEX


class CodexRun:
    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.returncode = proc.returncode
        self.stderr = proc.stderr
        self.events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]

    def items(self, kind: str) -> list[dict]:
        return [e["item"] for e in self.events if e.get("type") == "item.completed" and e["item"].get("type") == kind]


@pytest.fixture
def codex(tmp_path):
    """``codex(prompt, *config_overrides, config_toml="")`` runs ``codex exec --json`` in a
    fresh workspace with its own home, and returns a :class:`CodexRun`."""
    binary = _require_codex()
    home, codex_home, work = tmp_path / "home", tmp_path / "codex-home", tmp_path / "work"
    for folder in (home, codex_home, work):
        folder.mkdir()
    (work / "orders.py").write_text(ORDERS_SCRIPT)
    # Its own HOME: the login shell Codex runs commands in reads no profile of this machine's.
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(codex_home),
           "OPENAI_API_KEY": "sk-codex-test", "CODEX_API_KEY": "sk-codex-test", "LANG": "C.UTF-8"}

    def run(prompt: str, *overrides: str, config_toml: str = "", resume: bool = False) -> CodexRun:
        (codex_home / "config.toml").write_text(config_toml)
        argv = [binary, "exec", *(["resume", "--last"] if resume else []), "--json", "--skip-git-repo-check",
                "-m", MODEL, "-c", "check_for_update_on_startup=false"]
        for override in overrides:
            argv += ["-c", override]
        proc = subprocess.run([*argv, prompt], cwd=work, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
        return CodexRun(proc)

    return run


def _stats_once(proxy, requests: int) -> dict:
    """/stats once it counts ``requests`` (a worker adds its figures at its next flush)."""
    return wait_for(lambda: (stats := httpx.get(f"{proxy.url}/stats").json())["total_requests"] >= requests
                    and stats, timeout=10, interval=0.1, what=f"{requests} requests in /stats")


def _provider_config(proxy, arguments: dict) -> str:
    headers = "{ " + f'"x-mock-tool-arguments" = {json.dumps(json.dumps(arguments))}' + " }"  # a TOML inline table
    return (f'model_provider = "headroom"\n\n[model_providers.headroom]\nname = "Headroom"\n'
            f'base_url = "{proxy.url}/v1"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n'
            f"http_headers = {headers}\n")


def test_codex_runs_a_function_call_round_trip_through_the_proxy_compressed(start_proxy, fresh_mock, codex):
    proxy = start_proxy("--no-cache")
    # Codex truncates a command's output to its own limit by default; raised here so that the
    # whole output reaches the proxy, which keeps what matters instead of the two ends.
    run = codex(QUESTION, "tool_output_token_limit=50000",
                config_toml=_provider_config(proxy, {"cmd": "python3 orders.py"}))
    assert run.returncode == 0, run.stderr[-2000:]

    (command,) = run.items("command_execution")
    assert command["exit_code"] == 0 and "python3 orders.py" in command["command"]
    printed = command["aggregated_output"]
    assert printed.count('"id": "ord_') == 150
    (answer,) = run.items("agent_message")
    assert answer["text"].startswith("mock reply: tool result:")

    seen = fresh_mock.requests()
    assert [(r["method"], r["path"]) for r in seen] == [("POST", "/v1/responses")] * 2
    first, second = (json.loads(r["body"]) for r in seen)
    (output,) = [item for item in second["input"] if item.get("type") == "function_call_output"]
    (call,) = [item for item in second["input"] if item.get("type") == "function_call"]
    assert output["call_id"] == call["call_id"] and json.loads(call["arguments"]) == {"cmd": "python3 orders.py"}
    # Compressed: a fraction of what the command printed, the failed order still there, the
    # rest retrievable; Codex's own header in front of the output kept.
    sent = output["output"]
    assert len(sent) * 5 < len(printed)
    assert "ord_00097" in sent and "insufficient_funds" in sent and "headroom_retrieve key=" in sent
    assert "Process exited with code 0" in sent

    # Everything else is Codex's own, re-sent unchanged: the ~20 KB developer prompt and the
    # user's turn open the second request exactly as they opened the first (a cache prefix),
    # and the fields the API keys its cache and storage on pass through.
    assert second["input"][: len(first["input"])] == first["input"]
    assert first["input"][0]["role"] == "developer" and len(json.dumps(first["input"][0])) > 5_000
    for key in ("prompt_cache_key", "store", "include", "tools", "instructions"):
        assert second.get(key) == first.get(key)

    stats = _stats_once(proxy, 2)
    assert stats["total_requests"] == 2 and stats["requests_by_provider"]["openai"] == 2
    assert stats["tokens_saved"] > 3_000

    # The next turn of the same session: Codex re-sends its history with the command's full
    # output, and the proxy sends the upstream the very bytes it sent before (prompt cache).
    fresh_mock.reset()
    again = codex("And which one was paid last?", "tool_output_token_limit=50000", resume=True,
                  config_toml=_provider_config(proxy, {"cmd": "python3 orders.py"}))
    assert again.returncode == 0, again.stderr[-2000:]
    third = json.loads(fresh_mock.requests()[0]["body"])
    assert third["input"][: len(second["input"])] == second["input"]


def test_codex_with_openais_built_in_provider_goes_over_http_at_once(start_proxy, fresh_mock, codex):
    proxy = start_proxy("--no-cache")
    run = codex("say hello", f'openai_base_url="{proxy.url}/v1"')
    assert run.returncode == 0, run.stderr[-2000:]
    # One WebSocket attempt, refused with 426, then HTTP: no reconnect loop (a 405 costs five
    # retries, about 6 s; a 400 fails the turn).
    assert "Reconnecting" not in json.dumps(run.events) + run.stderr
    assert run.stderr.count("failed to connect to Responses WebSocket") == 1
    (answer,) = run.items("agent_message")
    assert answer["text"].startswith("mock reply: tool result:")
    seen = fresh_mock.requests()
    assert [(r["method"], r["path"]) for r in seen] == [("POST", "/v1/responses")] * 2
    assert seen[0]["headers"]["authorization"] == "Bearer sk-codex-test"
    assert _stats_once(proxy, 2)["requests_by_provider"]["openai"] == 2



def test_codex_session_where_the_model_retrieves_what_compression_left_out(start_proxy, fresh_mock, codex, tmp_path):
    """The model (the mock, as a careful model seeking one ticket) has Codex read a log; Headroom
    compresses it, the model calls ``headroom_retrieve``, the proxy answers it and asks again,
    and Codex shows a normal answer quoting the line: no unknown tool, no error. The next turn
    of the session sends the upstream the very bytes of the continuation (the prompt cache)."""
    ticket = "TK-3f9c0a"
    lines = [f"2024-05-01T10:{i // 60:02d}:{i % 60:02d}Z INFO api-{i % 5} served request {5000 + i} "
             f"ticket TK-{(i * 104729) % 16**6:06x}" for i in range(300)]
    lines[171] = lines[171].rsplit(" ", 1)[0] + f" ticket {ticket}"
    (tmp_path / "work" / "app.log").write_text("\n".join(lines) + "\n")
    proxy = start_proxy("--no-cache")
    headers = {"x-mock-seek": ticket, "x-mock-call-first": "exec_command",
               "x-mock-tool-arguments": json.dumps({"cmd": "cat app.log"})}
    inline = "{ " + ", ".join(f'"{k}" = {json.dumps(v)}' for k, v in headers.items()) + " }"
    config = (f'model_provider = "headroom"\n\n[model_providers.headroom]\nname = "Headroom"\n'
              f'base_url = "{proxy.url}/v1"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n'
              f"http_headers = {inline}\n")
    run = codex("Which request carried the ticket?", "tool_output_token_limit=50000", config_toml=config)
    assert run.returncode == 0, run.stderr[-2000:]
    (command,) = run.items("command_execution")
    assert "cat app.log" in command["command"] and ticket in command["aggregated_output"]
    messages = [item["text"] for item in run.items("agent_message")]
    assert messages and messages[-1].startswith("Found: ") and lines[171] in messages[-1]
    assert "headroom_retrieve" not in json.dumps(run.events) + run.stderr  # Codex never saw the proxy's tool
    assert not [e for e in run.events if e.get("type") in ("error", "turn.failed")]

    raw = [r["body"].encode("latin-1") for r in fresh_mock.requests() if r["path"] == "/v1/responses"]
    assert len(raw) == 3  # Codex's question, its command's output, the proxy's continuation
    _, compressed, continuation = (json.loads(body) for body in raw)
    # Codex asks for encrypted reasoning, so the mock reasons; the continuation keeps it before the call.
    assert "reasoning.encrypted_content" in compressed["include"]
    assert [i["type"] for i in continuation["input"][-4:]] == ["reasoning", "message", "function_call",
                                                              "function_call_output"]
    (output,) = [i for i in compressed["input"] if i.get("type") == "function_call_output"]
    assert ticket not in output["output"] and "headroom:" in output["output"]  # compression hid the line
    assert compressed["tools"][-1]["name"] == "headroom_retrieve" and compressed["store"] is False
    call, result = continuation["input"][-2:]
    assert call["name"] == "headroom_retrieve" and json.loads(call["arguments"])["query"] == ticket
    assert result["call_id"] == call["call_id"] and lines[171] in result["output"]
    assert all("id" not in item for item in continuation["input"][len(compressed["input"]):])  # store: false
    assert continuation["input"][:len(compressed["input"])] == compressed["input"]

    fresh_mock.reset()
    again = codex("Thanks. And which one was served last?", "tool_output_token_limit=50000", resume=True,
                  config_toml=config)
    assert again.returncode == 0, again.stderr[-2000:]
    nxt = fresh_mock.requests()[0]["body"].encode("latin-1")
    prefix = b'"input":' + dumps(continuation["input"])[:-1]  # byte for byte what the upstream saw
    assert prefix in raw[2] and prefix in nxt
