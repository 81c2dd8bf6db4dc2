"""A stop signal while ``headroom proxy`` starts: noted once, the second one acts at once
(:mod:`headroom.workers.early_stop`). Each case in a fresh interpreter: signals are the
behaviour under test."""

from __future__ import annotations

import signal
import subprocess
import sys

from testkit import ROOT

_PRELUDE = "import os, signal, time\nfrom headroom.workers import early_stop\nearly_stop.note_stop_signals()\n"


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _PRELUDE + code], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_a_stop_signal_is_noted_and_the_process_goes_on():
    out = _run("os.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(0.2)\nprint(early_stop.requested())")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(int(signal.SIGTERM)) and out.stderr == ""


def test_the_second_stop_signal_takes_its_own_action_at_once():
    out = _run("os.kill(os.getpid(), signal.SIGINT)\ntime.sleep(0.2)\nos.kill(os.getpid(), signal.SIGTERM)\n"
               "time.sleep(5)\nprint('still running')")
    assert out.returncode == -signal.SIGTERM and "still running" not in out.stdout
