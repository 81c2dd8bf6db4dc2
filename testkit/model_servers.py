"""The LLMLingua model server as a real process for tests (``headroom model-server``),
and polling its status."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

from headroom.workers.model_client import ModelClient
from testkit import ROOT
from testkit.services import stop


class ServerProcess:
    """``headroom model-server`` with these options as a real subprocess (the real CLI)."""

    def __init__(self, options: dict, log: Path) -> None:
        self.options = options
        self.log = log
        self.proc: subprocess.Popen | None = None
        if options.get("socket_path"):
            self.url = f"unix://{options['socket_path']}"
        else:
            self.url = f"tcp://127.0.0.1:{options['port']}"

    def argv(self) -> list[str]:
        """``headroom model-server`` with these options, as an operator would start it."""
        flags = {"model": "--llmlingua-model", "backend": "--llmlingua-backend", "device": "--llmlingua-device",
                 "socket_path": "--socket", "host": "--host", "port": "--port", "token": "--token",
                 "threads": "--threads", "max_batch_tokens": "--max-batch-tokens",
                 "max_queue_windows": "--max-queue-windows"}
        argv = [sys.executable, "-m", "headroom", "model-server"]
        for name, value in self.options.items():
            argv += [flags[name], str(value)]
        return argv

    def start(self) -> ServerProcess:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(self.argv(), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.wait_listening()
        return self

    def wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"model server exited with {self.proc.returncode}:\n{self.output()}")
            if self._accepts():
                return
            time.sleep(0.02)
        raise RuntimeError(f"model server not listening after {timeout}s:\n{self.output()}")

    def _accepts(self) -> bool:
        path = self.options.get("socket_path")
        family = socket.AF_UNIX if path else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            try:
                sock.connect(path or ("127.0.0.1", self.options["port"]))
                return True
            except OSError:
                return False

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        stop(self.proc)
        return self.proc.returncode


async def wait_ready(client: ModelClient, timeout: float = 60.0) -> dict:
    """Poll status until the model is loaded; fail at once if loading failed."""
    deadline = time.monotonic() + timeout
    states = []
    while time.monotonic() < deadline:
        status = await client.status()
        if status is not None:
            states.append(status["state"])
            if status["state"] == "ready":
                status["seen_states"] = states
                return status
            assert status["state"] != "failed", status
        await asyncio.sleep(0.02)
    raise AssertionError(f"model server not ready after {timeout}s: states {states[-5:]}")


async def wait_status(client: ModelClient, condition, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = await client.status()
        if status is not None and condition(status):
            return status
        await asyncio.sleep(0.01)
    raise AssertionError(f"status condition not met within {timeout}s: {status}")


def prose(words: int) -> str:
    """English text of about ``words`` words, from the tiny model's own corpus."""
    from testkit.tiny_lingua import CORPUS

    vocabulary = CORPUS.split()
    return " ".join(vocabulary[i % len(vocabulary)] for i in range(words))
