"""Supervised children: ready checks, restart with backoff, clean stop, never orphaned."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from headroom.workers.supervisor import ChildFailed, ChildSpec, SupervisedChild
from testkit import ROOT
from testkit.services import process_gone
from testkit.waiting import wait_for

# A tiny server: listens on a Unix socket given as argv[1], answers every connection with "ok".
SERVER = """
import socket, sys
sock = socket.socket(socket.AF_UNIX)
sock.bind(sys.argv[1])
sock.listen()
while True:
    conn, _ = sock.accept()
    conn.sendall(b"ok")
    conn.close()
"""


def answers(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(0.2)
            sock.connect(path)
            return sock.recv(2) == b"ok"
    except OSError:
        return False


def server_spec(tmp: Path, **extra) -> tuple[ChildSpec, str]:
    path = str(tmp / "s.sock")

    def argv_with_cleanup() -> list[str]:
        return [sys.executable, "-c", f"import os\ntry: os.unlink({path!r})\nexcept OSError: pass\n{SERVER}", path]

    return ChildSpec("toy server", argv_with_cleanup(), ready=lambda: answers(path), log_path=tmp / "s.log",
                     **extra), path


def test_start_waits_until_ready_and_stop_ends_it(tmp_path):
    spec, path = server_spec(tmp_path)
    child = SupervisedChild(spec)
    child.start()
    try:
        assert answers(path) and child.running()
        pid = child.pid
    finally:
        child.stop()
    assert process_gone(pid) and not child.running()
    child.stop()  # idempotent


def test_a_child_that_dies_is_restarted_with_backoff(tmp_path):
    spec, path = server_spec(tmp_path, backoff=(0.1, 1.0))
    child = SupervisedChild(spec)
    restarted: list[int] = []
    child.on_restart(lambda c: restarted.append(c.pid))
    child.start()
    child.supervise(interval=0.05)
    try:
        first = child.pid
        child.kill()  # as a crash would
        wait_for(lambda: restarted and answers(path), timeout=5, what="the restarted child serving")
        assert child.pid != first and child.restarts == 1 and process_gone(first)
        started = time.monotonic()
        child.kill()
        wait_for(lambda: len(restarted) == 2 and answers(path), timeout=5, what="the second restart")
        assert time.monotonic() - started >= 0.2  # it died young: the wait doubled (0.1 s, then 0.2 s)
    finally:
        child.stop()
    assert "exited with status" not in child.log_tail()  # the child's own log holds only its output


def test_a_child_that_never_gets_ready_fails_with_its_log(tmp_path):
    spec = ChildSpec("broken", [sys.executable, "-c", "import sys; print('no config here'); sys.exit(3)"],
                     ready=lambda: False, log_path=tmp_path / "b.log")
    with pytest.raises(ChildFailed, match=r"(?s)broken exited with status 3.*no config here"):
        SupervisedChild(spec).start()
    slow = ChildSpec("slow", [sys.executable, "-c", "import time; time.sleep(30)"], ready=lambda: False,
                     start_timeout=0.3)
    child = SupervisedChild(slow)
    with pytest.raises(ChildFailed, match="not ready within"):
        child.start()
    assert not child.running()


def test_children_die_with_their_parent(tmp_path):
    """A parent killed with SIGKILL runs no cleanup: the kernel's parent-death signal must end the child."""
    path = tmp_path / "s.sock"
    code = (
        "import sys, time\n"
        "from headroom.workers.supervisor import ChildSpec, SupervisedChild\n"
        f"child = SupervisedChild(ChildSpec('toy', [sys.executable, '-c', {SERVER!r}, {str(path)!r}],"
        " ready=lambda: True))\n"
        "child.start(); child.supervise(); print(child.pid, flush=True); time.sleep(30)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        pid = int(parent.stdout.readline())
        assert not process_gone(pid)
        parent.kill()
        parent.wait()
        wait_for(lambda: process_gone(pid), timeout=3, what="the orphaned child ending")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
