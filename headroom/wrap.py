"""``headroom wrap claude|codex [agent args…]``: run a coding agent through Headroom.

The quickest start: no environment variables or config files to learn. It reuses a Headroom
already answering on the port (``--port``, default 8787) or starts one with the same flags as
``headroom proxy``, launches the agent pointed at it, passes the agent's exit code through,
and stops the proxy it started once the agent exits, Ctrl-C included.

- Claude Code reads ``ANTHROPIC_BASE_URL``;
- Codex gets ``-c openai_base_url=…/v1`` and a raised ``tool_output_token_limit``: by default
  Codex cuts a command's output to its two ends before sending it; the proxy keeps what
  matters of the whole output instead (and the rest stays retrievable).

The proxy runs in a session of its own with its output in a log file: the agent owns the
terminal (Claude Code draws a full-screen interface), and a Ctrl-C typed there reaches the
agent, never the proxy, which is stopped only after the agent has finished.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headroom import port_check
from headroom.config import OPTIONS, ProxyConfig
from headroom.port_check import base_url, check_port

#: Codex's limit on one command's output sent to the model, raised from its default (about
#: 10,000 tokens) so the whole output reaches the proxy, which compresses it.
CODEX_TOOL_OUTPUT_TOKENS = 50_000
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Agent:
    name: str
    binary: str
    install: str

    def command(self, url: str, args: Sequence[str]) -> list[str]:
        if self.name == "codex":
            return [self.binary, "-c", f'openai_base_url="{url}/v1"',
                    "-c", f"tool_output_token_limit={CODEX_TOOL_OUTPUT_TOKENS}", *args]
        return [self.binary, *args]

    def environment(self, url: str, environ: Mapping[str, str]) -> dict[str, str]:
        env = dict(environ)
        if self.name == "claude":
            env["ANTHROPIC_BASE_URL"] = url
        return env


AGENTS = {
    "claude": Agent("claude", "claude", "npm install -g @anthropic-ai/claude-code"),
    "codex": Agent("codex", "codex", "npm install -g @openai/codex"),
}


class WrapError(Exception):
    """A one-line reason ``headroom wrap`` cannot go on (exit 2)."""


def proxy_environment(flags: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of the proxy it starts: the flags given to ``wrap`` as the ``HEADROOM_*``
    variables they stand for. Why not flags: secrets (``--admin-token``) would show in ``ps``."""
    env = dict(environ)
    for option in OPTIONS:
        value = flags.get(option.field)
        if value is not None:
            env[option.env] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def _ready(url: str) -> bool:
    try:
        with port_check.get(f"{url}/readyz", 1) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class StartedProxy:
    proc: subprocess.Popen
    log: Path

    def stop(self, grace: float) -> None:
        """SIGTERM (the proxy drains, then exits), SIGKILL to its whole session if it outlives the grace."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace + 10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_proxy(config: ProxyConfig, flags: Mapping[str, Any], url: str) -> StartedProxy:
    """``headroom proxy`` in a session of its own, output in a log file; returned once ``/readyz`` answers 200."""
    folder = Path(tempfile.mkdtemp(prefix="headroom-wrap-"))
    log = folder / "proxy.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "headroom", "proxy"], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=proxy_environment(flags, os.environ),
                                start_new_session=True)
    started = StartedProxy(proc, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while not _ready(url):
            if proc.poll() is not None:
                raise WrapError(f"the proxy exited with {proc.returncode} before it was ready:\n{started.tail()}")
            if time.monotonic() > deadline:
                raise WrapError(f"the proxy was not ready within {READY_TIMEOUT_S:.0f}s (log: {log})")
            time.sleep(0.05)
    except BaseException:  # Ctrl-C while it starts, too: it runs in a session of its own
        started.stop(config.shutdown_grace)
        raise
    return started


def run_agent(command: list[str], env: dict[str, str]) -> int:
    """Run the agent to its end; its exit status (128 + N when a signal N ended it).

    SIGINT, SIGTERM and SIGHUP sent to ``headroom wrap`` go to the agent, which decides how to
    end; this process keeps waiting for it, so the proxy is stopped only afterwards."""
    agent = subprocess.Popen(command, env=env)

    def forward(signum: int, _frame: object) -> None:
        if agent.poll() is None:
            agent.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        code = agent.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def wrap(agent_name: str, agent_args: Sequence[str], config: ProxyConfig, flags: Mapping[str, Any]) -> int:
    agent = AGENTS[agent_name]
    binary = shutil.which(agent.binary)
    if binary is None:
        raise WrapError(f"{agent.binary} is not on PATH (install it with: {agent.install})")
    agent = Agent(agent.name, binary, agent.install)
    url = base_url(config.host, config.port)
    state = check_port(config.host, config.port)
    started = None
    if state.holder == "headroom":
        print(f"headroom: using the Headroom already running at {url} (its own settings apply)", file=sys.stderr)
    elif state.holder == "free":
        started = start_proxy(config, flags, url)
        print(f"headroom: proxy started at {url} (log: {started.log})", file=sys.stderr)
    elif state.holder == "forbidden":
        raise WrapError(f"cannot listen on {config.host}:{config.port}: {state.detail}")
    else:
        raise WrapError(f"port {config.port} is held by {state.detail}; choose another with --port")
    try:
        return run_agent(agent.command(url, agent_args), agent.environment(url, os.environ))
    finally:
        if started is not None:
            started.stop(config.shutdown_grace)
            shutil.rmtree(started.log.parent, ignore_errors=True)
