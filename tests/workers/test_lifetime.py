"""The signal shield Sanic's manager process is started under (:mod:`headroom.workers.lifetime`):
what is spawned under it keeps SIGINT and SIGTERM blocked; the main thread's own are deferred."""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from pathlib import Path

from headroom.workers.lifetime import SpawnShield
from testkit.waiting import wait_for


def _blocked(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)


def _bit(sig: int) -> int:
    return 1 << (sig - 1)


def test_a_process_spawned_under_the_shield_keeps_the_stop_signals_blocked_and_one_after_does_not():
    context = multiprocessing.get_context("spawn")
    # Multiprocessing's resource tracker, started on the first spawn, unblocks both signals in
    # the calling thread: the shield must not be lifted by it.
    with SpawnShield():
        shielded = context.Process(target=time.sleep, args=(30,))
        shielded.start()
    plain = context.Process(target=time.sleep, args=(30,))
    plain.start()
    try:
        stops = _bit(signal.SIGINT) | _bit(signal.SIGTERM)
        assert _blocked(shielded.pid) & stops == stops
        assert _blocked(plain.pid) & stops == 0
    finally:
        for process in (shielded, plain):
            process.kill()
            process.join(10)


def test_a_stop_signal_to_the_shielded_thread_is_deferred_until_lifted_not_lost():
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with SpawnShield() as shield:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
            assert signal.SIGTERM in signal.sigpending() and seen == []  # held by the kernel
            shield.lift()
            wait_for(lambda: seen, timeout=5, what="the deferred signal's handler")
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
