"""The processes a test session leaves behind: found at its end, listed, and stopped.

A process the tests started may outlive the fixture that started it, or its parent (a proxy
killed with SIGKILL once left Sanic's manager process running for good): reparented to init,
it is no longer anyone's child. So the session marks every process it starts: it puts a
token of its own in its environment (:func:`mark_session`), which every child inherits, its
helpers in sessions of their own and their multiprocessing children included. At the end,
a process is left behind when it carries the token, or is still a child of the test run,
or was started in the run's terminal session after it and has lost its parent there
(a child whose environment the test replaced, orphaned). Other people's test runs on the same
machine carry other tokens and run in other sessions: they are never counted.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from testkit import processes

SESSION_ENV = "TESTKIT_SESSION"  # not HEADROOM_*: tests drop those from the environments they pass


def mark_session() -> str:
    """Give the processes this run starts from now on a token of its own."""
    token = f"{os.getpid()}-{secrets.token_hex(8)}"
    os.environ[SESSION_ENV] = token
    return token


@dataclass(frozen=True)
class Leftover:
    pid: int
    cwd: str
    cmdline: str

    def __str__(self) -> str:
        return f"pid {self.pid} (cwd {self.cwd}): {self.cmdline[:300]}"


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def _lineage(pid: int, parents: dict[int, int]) -> list[int]:
    """``pid``'s ancestors, nearest first (bounded: the table is a snapshot)."""
    chain: list[int] = []
    while (pid := parents.get(pid, 0)) > 1 and len(chain) < len(parents):
        chain.append(pid)
    return chain


def find(token: str, me: int | None = None) -> list[Leftover]:
    """The live processes this run (``me``, the pytest process) has left behind; see the module doc."""
    me = os.getpid() if me is None else me
    table: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := processes.stat(int(entry))) is not None:
            table[int(entry)] = fields
    mine = table.get(me)
    if mine is None:
        return []
    parents = {pid: int(fields[1]) for pid, fields in table.items()}
    session, started = int(mine[3]), int(mine[19])  # stat fields 6 and 22, counted after the name
    marker = f"{SESSION_ENV}={token}".encode()
    found = []
    for pid, fields in sorted(table.items()):
        if pid == me or fields[0] == "Z":
            continue
        cmdline = _read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
        ppid = int(fields[1])
        if ppid == me and "multiprocessing.resource_tracker" in cmdline:
            continue  # this run's own: it exits with it
        parent = table.get(ppid)
        orphaned_here = (int(fields[3]) == session and int(fields[19]) > started
                         and (parent is None or int(parent[3]) != session))
        if marker in _read(f"/proc/{pid}/environ").split(b"\0") or me in _lineage(pid, parents) or orphaned_here:
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                cwd = "?"
            found.append(Leftover(pid, cwd, cmdline))
    return found


def wait_and_find(token: str, timeout: float = 10.0, interval: float = 0.1) -> list[Leftover]:
    """:func:`find`, giving processes still on their way out (a proxy's workers draining, a
    helper told to stop) ``timeout`` seconds to go."""
    deadline = time.monotonic() + timeout
    while (left := find(token)) and time.monotonic() < deadline:
        time.sleep(interval)
    return left


def kill(left: list[Leftover]) -> None:
    """SIGKILL what was left behind, so one failing run does not burden the next."""
    for process in left:
        try:
            os.kill(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
