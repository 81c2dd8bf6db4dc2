"""Restart a worker process that died, so one crash never leaves the proxy half-dead.

Sanic's worker manager starts and stops workers but does not replace one that crashed (a
segfault, the OOM killer): the port stays open on the remaining workers, or on none. The
watchdog runs as a thread in the main process, notices a dead worker within a second, and
asks the manager to restart it through the manager's own message channel — the same path
Sanic uses for its own restarts.

This is the one place Headroom reads Sanic's internals: ``app.manager`` and its
``_shutting_down``, ``transient_processes`` and ``monitor_publisher``, and each worker
process's ``state``/``set_state``. Checked against Sanic 24.12 and 25.12; a test kills a
worker and expects it back, so a Sanic upgrade that changes them fails loudly.
"""

from __future__ import annotations

import logging
import threading

from sanic import Sanic
from sanic.worker.constants import ProcessState

from headroom.observability import metrics

log = logging.getLogger("headroom.workers")

_SETTLED = (ProcessState.ACKED, ProcessState.STARTED, ProcessState.JOINED, ProcessState.FAILED,
            ProcessState.COMPLETED)


class Watchdog:
    def __init__(self, app: Sanic, interval: float = 0.5) -> None:
        self._app = app
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="headroom-watchdog", daemon=True)
        self.restarts = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        manager = self._app.manager
        while not self._stop.wait(self._interval):
            if manager._shutting_down:
                return
            for process in manager.transient_processes:
                if process.state in _SETTLED and not process.is_alive():
                    self._restart(manager, process)

    def _restart(self, manager, process) -> None:
        pid, code = process.pid, process.exitcode
        log.warning("worker %s (pid %s) died with exit code %s: restarting it", process.name, pid, code)
        metrics.mark_worker_dead(pid)
        process.set_state(ProcessState.RESTARTING, force=True)  # not picked again while it restarts
        manager.monitor_publisher.send(process.name)
        self.restarts += 1
