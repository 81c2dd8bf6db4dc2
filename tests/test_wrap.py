"""``headroom wrap claude|codex``: the real Claude Code and Codex CLIs from npm, launched by the
real ``headroom wrap`` command, each completing a turn against the mock upstream through the
proxy wrap started (or found), with the agent's exit code passed through and no proxy left.

``scripts/test.sh`` installs both CLIs into ``npm/``. Without one its tests skip and say why;
with ``HEADROOM_REQUIRE_CLAUDE=1`` / ``HEADROOM_REQUIRE_CODEX=1`` (``.ci/run``) they fail.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from testkit import ROOT
from testkit.ports import free_port
from testkit.waiting import wait_for

NPM_BIN = ROOT / "npm" / "node_modules" / ".bin"
AGENTS = {"claude": "HEADROOM_REQUIRE_CLAUDE", "codex": "HEADROOM_REQUIRE_CODEX"}


def _require(agent: str) -> None:
    if not (NPM_BIN / agent).exists():
        message = f"the {agent} CLI is not installed (scripts/test.sh installs it into npm/)"
        if os.environ.get(AGENTS[agent]) == "1":
            pytest.fail(f"{message}; {AGENTS[agent]}=1", pytrace=False)
        pytest.skip(message)


@pytest.fixture
def agent_env(tmp_path) -> dict[str, str]:
    """A clean environment: its own HOME, the npm CLIs first on PATH, no traffic but the API's."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{NPM_BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(home), "LANG": "C.UTF-8",
        "CODEX_HOME": str(home / ".codex"), "OPENAI_API_KEY": "sk-wrap-test", "CODEX_API_KEY": "sk-wrap-test",
        "ANTHROPIC_API_KEY": "sk-ant-wrap-test",
        # Claude Code: no telemetry, update checks or error reports (nothing but the API is reachable here)
        "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "PYTHONPATH": str(ROOT),
    }
    for name in ("TIKTOKEN_CACHE_DIR",):
        if name in os.environ:
            env[name] = os.environ[name]
    (home / ".codex").mkdir()
    return env


def wrap(mock, port: int, env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``headroom wrap`` to its end. Past ``timeout`` it gets SIGTERM (which it forwards to
    the agent, then stops its proxy) before a SIGKILL: a stuck agent leaves nothing behind."""
    command = [sys.executable, "-m", "headroom", "wrap", "--port", str(port), "--no-cache",
               "--anthropic-api-url", mock.url, "--openai-api-url", mock.url, *args]
    proc = subprocess.Popen(command, env=env, cwd=env["HOME"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"headroom wrap still running after {timeout}s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def assert_started_a_proxy(stderr: str) -> None:
    assert re.search(r"headroom: proxy started at http://127\.0\.0\.1:\d+ \(log: ", stderr), stderr[-2000:]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the proxy binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def assert_no_proxy_left(port: int) -> None:
    """No process of the proxy wrap started is left: its main process and workers all held the
    port (a worker that outlived its main process would still hold it). wrap waits for the
    proxy to exit before it exits itself, so this holds at once; the short wait only absorbs
    the kernel releasing the socket."""
    wait_for(lambda: _port_free(port), timeout=2, what=f"port {port} free after wrap exited")


def test_wrap_claude_runs_one_turn_through_a_proxy_it_starts_and_stops(fresh_mock, agent_env):
    _require("claude")
    port = free_port()
    # x-mock-no-tools: the mock answers in text (its default, a call to the first tool offered,
    # is Claude Code's sub-agent tool); sent by Claude Code itself.
    env = {**agent_env, "ANTHROPIC_CUSTOM_HEADERS": "x-mock-no-tools: 1"}
    run = wrap(fresh_mock, port, env, "claude", "-p", "say hello to the proxy", "--model", "claude-sonnet-4-5")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("mock reply: ")  # the mock's answer, printed by Claude Code
    assert_started_a_proxy(run.stderr)
    seen = [r for r in fresh_mock.requests() if r["path"] == "/v1/messages"]
    assert seen, fresh_mock.requests()
    # Through the proxy: it forwarded to the mock as the upstream ("Host" is the mock's), and
    # Claude Code's own identity and key came along.
    assert all(r["headers"]["host"] == fresh_mock.authority for r in seen)
    assert seen[-1]["headers"]["x-api-key"] == "sk-ant-wrap-test"
    assert seen[-1]["headers"]["user-agent"].startswith("claude-cli/")
    assert "say hello to the proxy" in seen[-1]["body"]
    assert_no_proxy_left(port)


def test_wrap_passes_the_agents_exit_code_through(fresh_mock, agent_env):
    _require("claude")
    port = free_port()
    # An upstream error it does not retry ends a print-mode turn with a failure status.
    env = {**agent_env, "ANTHROPIC_CUSTOM_HEADERS": "x-mock-status: 400"}
    run = wrap(fresh_mock, port, env, "claude", "-p", "hello", "--model", "claude-sonnet-4-5", timeout=60)
    assert run.returncode == 1, (run.returncode, run.stdout[-1000:], run.stderr[-2000:])
    assert fresh_mock.requests(), "the turn never reached the upstream"
    assert_no_proxy_left(port)


def test_wrap_codex_runs_one_turn_through_the_proxy(fresh_mock, agent_env):
    _require("codex")
    port = free_port()
    run = wrap(fresh_mock, port, agent_env, "codex", "exec", "--json", "--skip-git-repo-check", "-m",
               "gpt-5-codex", "-c", "check_for_update_on_startup=false", "say hello")
    assert run.returncode == 0, run.stderr[-3000:]
    assert_started_a_proxy(run.stderr)
    seen = [r for r in fresh_mock.requests() if r["path"] == "/v1/responses"]
    assert seen and seen[0]["headers"]["authorization"] == "Bearer sk-wrap-test"
    assert '"agent_message"' in run.stdout
    assert_no_proxy_left(port)


def test_wrap_reuses_a_running_headroom_and_leaves_it_running(start_proxy, fresh_mock, agent_env):
    _require("codex")
    proxy = start_proxy("--no-cache")
    port = int(proxy.url.rsplit(":", 1)[1])
    run = wrap(fresh_mock, port, agent_env, "codex", "exec", "--json", "--skip-git-repo-check", "-m",
               "gpt-5-codex", "-c", "check_for_update_on_startup=false", "say hello")
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"using the Headroom already running at {proxy.url}" in run.stderr
    assert [r["path"] for r in fresh_mock.requests()].count("/v1/responses") >= 1
    assert proxy.proc.poll() is None and httpx.get(f"{proxy.url}/livez").status_code == 200


def test_a_port_held_by_something_else_is_one_line_and_exit_2(agent_env, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        command = [sys.executable, "-m", "headroom", "wrap", "--port", str(port), "codex", "exec", "hi"]
        run = subprocess.run(command, env=agent_env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"headroom: error: port {port} is held by something that does not answer HTTP")
    assert line.endswith("; choose another with --port")
    assert "Traceback" not in run.stderr


def test_ctrl_c_reaches_the_agent_and_the_proxy_is_stopped_afterwards(fresh_mock, agent_env, tmp_path):
    """SIGINT to headroom wrap while the agent runs: the agent gets it and ends, wrap exits with
    its status, and the proxy wrap started is gone. The agent here is a stand-in named ``codex``
    on PATH (a script that records the signal), so that the timing is the test's own."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    marker = tmp_path / "got-sigint"
    agent = fake_bin / "codex"
    agent.write_text(f"#!{sys.executable}\nimport signal, sys, time\n"
                     f"def stop(*_):\n    open({str(marker)!r}, 'w').write('SIGINT')\n    sys.exit(42)\n"
                     "signal.signal(signal.SIGINT, stop)\nprint('agent up', flush=True)\n"
                     "time.sleep(120)\nsys.exit(3)\n")
    agent.chmod(0o755)
    port = free_port()
    env = {**agent_env, "PATH": f"{fake_bin}{os.pathsep}{agent_env['PATH']}"}
    command = [sys.executable, "-m", "headroom", "wrap", "--port", str(port), "--anthropic-api-url", fresh_mock.url,
               "--openai-api-url", fresh_mock.url, "codex"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "agent up"
        assert httpx.get(f"http://127.0.0.1:{port}/livez", timeout=5).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 42
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert Path(marker).read_text() == "SIGINT"
    assert_no_proxy_left(port)


def test_a_missing_agent_is_one_line_and_exit_2(agent_env):
    env = {**agent_env, "PATH": "/nonexistent"}
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "headroom", "wrap", "claude", "-p", "hi"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and time.monotonic() - start < 30
    assert run.stderr.strip() == ("headroom: error: claude is not on PATH "
                                  "(install it with: npm install -g @anthropic-ai/claude-code)")
