"""Restart a worker process that died, so one crash never leaves the proxy half-dead.

Sanic's worker manager starts and stops workers but does not replace one that crashed (a
segfault, the OOM killer): the port stays open on the remaining workers, or on none. The
watchdog runs as a thread in the main process, notices a dead worker within a second, and
asks the manager to restart it through the manager's own message channel — the same path
Sanic uses for its own restarts.

This is the one place Headroom reads Sanic's internals: ``app.manager`` and its
``_shutting_down``, ``transient_processes``, ``monitor_publisher``, ``worker_state`` and
``_all_workers_ack``, each worker process's ``state``/``set_state``, and in a worker
``app.m.state``. Checked against Sanic 24.12 and 25.12; tests kill a worker and expect it
back, and stop the proxy just as it starts, so a Sanic upgrade that changes them fails loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time

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
        self._workers: list = []  # the worker processes last seen, to wait for at the very end
        self._signals: list[int] = []  # stop signals queued by the main thread's handler
        self._wake = threading.Event()
        self._handle_signal = None

    def start(self) -> None:
        """Call in the main process's main thread once Sanic's manager exists."""
        self._take_over_stop_signals()
        self._thread.start()

    def _take_over_stop_signals(self) -> None:
        """Handle SIGTERM and SIGINT in this thread, not in the main thread's signal handler.

        Sanic's handler talks to its state manager over the main thread's connection; run as
        a signal handler it can interrupt the main thread in the middle of a call on that same
        connection and garble both (seen: SIGTERM during a worker-state sync, traceback, exit
        code 1 instead of 0). The handler now only queues the signal; this thread, with a
        connection of its own, runs Sanic's handler.
        """
        manager = self._app.manager

        def queue(signum: int, frame: object) -> None:
            self._signals.append(signum)
            self._wake.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, queue)
        self._handle_signal = manager.shutdown_signal

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        manager = self._app.manager
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            while self._signals and self._handle_signal is not None:
                self._handle_signal(self._signals.pop(0), None)
            stopped = self._stop.is_set()
            self._workers = list(manager.transient_processes)
            if manager._shutting_down:
                try:
                    self._finish_stop(manager)
                except (EOFError, BrokenPipeError, ConnectionError, OSError):
                    pass  # Sanic's state manager has already shut down: nothing is left to see through
                return
            if stopped:
                return
            for process in manager.transient_processes:
                if process.state in _SETTLED and not process.is_alive():
                    self._restart(manager, process)

    def wait_for_workers(self, timeout_s: float) -> bool:
        """After Sanic's own shutdown returns: wait until every worker has exited. Sanic waits
        ~10 s per worker at most, while a worker may take --shutdown-grace to finish its
        streams; the private Redis and the model server must outlive them. True if all went."""
        deadline = time.monotonic() + timeout_s
        while any(process.is_alive() for process in self._workers):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _finish_stop(self, manager, limit_s: float = 60.0) -> None:
        """See every worker through a stop that came while some were still starting.

        Sanic's workers ignore SIGINT and SIGTERM until their handlers are installed, so a
        stop sent while one starts can be lost, and two things then go wrong in Sanic's
        manager (seen with SIGTERM within ~100 ms of the first 200 on /health):

        * it waits for every worker's "ready" before reading its messages, and the stop marks
          the workers TERMINATED, so the wait never ends and re-queues the stop message
          forever: the main process spins. A worker that has exited is therefore marked
          acknowledged; the wait ends and the queued stop ends the run the normal way.
        * a worker that acknowledged after the mark (it was still starting) overwrote it and
          never saw the signal: it is signalled again, once, as soon as it serves. (A worker
          that saw the mark stops itself: :func:`honour_a_stop_sent_while_starting`.)
        """
        signalled: set[int] = set()
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            alive = 0
            for process in list(manager.transient_processes):
                state = manager.worker_state.get(process.name, {})
                if not state.get("server"):
                    continue
                if process.is_alive():
                    alive += 1
                    late = state.get("state") == ProcessState.ACKED.name and state.get("serving")
                    if late and process.pid not in signalled:
                        signalled.add(process.pid)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(process.pid, signal.SIGINT)
                elif state.get("state") != ProcessState.ACKED.name:
                    manager.worker_state[process.name] = {**state, "state": ProcessState.ACKED.name}
            if not alive:
                return
            time.sleep(0.1)

    def _restart(self, manager, process) -> None:
        pid, code = process.pid, process.exitcode
        log.warning("worker %s (pid %s) died with exit code %s: restarting it", process.name, pid, code)
        metrics.mark_worker_dead(pid)
        process.set_state(ProcessState.RESTARTING, force=True)  # not picked again while it restarts
        manager.monitor_publisher.send(process.name)
        self.restarts += 1


async def honour_a_stop_sent_while_starting(app: Sanic, window_s: float = 3.0, poll_s: float = 0.1) -> None:
    """In a worker, for its first seconds of serving: make sure a stop is neither lost nor doubled.

    Sanic's workers ignore SIGINT and SIGTERM until their handlers are installed (they inherit
    the main process's "ignore"), and a stop whose handler runs while the start-up hooks run
    is swallowed by uvloop before ``run_forever`` begins; either way the worker would serve on
    after the main process has given up on it. The main process marks a worker TERMINATED
    before it signals it. So, for ``window_s``: this worker's stop signals only take note, and
    this task, running inside the serving loop, stops the worker once — on a signal or on the
    mark. A second stop in the middle of the graceful shutdown would cut in-flight streams.
    After the window, signals stop the worker directly again, as Sanic's own handler does.
    """
    if os.environ.get("SANIC_WORKER_PROCESS") != "true":
        return  # under an ASGI server, whose signal handling is its own
    loop = asyncio.get_running_loop()
    asked = False

    def note() -> None:
        nonlocal asked
        asked = True

    def stop_now() -> None:
        app.stop(terminate=False)

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, note)
        deadline = loop.time() + window_s
        while not asked and loop.time() < deadline:
            await asyncio.sleep(poll_s)
            try:
                asked = asked or app.m.state.get("state") == ProcessState.TERMINATED.name
            except (AttributeError, KeyError, EOFError, BrokenPipeError, ConnectionError):
                pass  # not one of Sanic's managed workers: the signals are all there is
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_now)
    if asked:
        log.info("worker %s: stop requested during start-up; stopping", os.getpid())
        stop_now()
