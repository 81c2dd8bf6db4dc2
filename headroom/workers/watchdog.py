"""Restart a worker process that died, so one crash never leaves the proxy half-dead.

Sanic's worker manager starts and stops workers but does not replace one that crashed (a
segfault, the OOM killer): the port stays open on the remaining workers, or on none. The
watchdog runs as a thread in the main process, notices a dead worker within a second, and
asks the manager to restart it through the manager's own message channel — the same path
Sanic uses for its own restarts.

It also sees a stop (SIGTERM, SIGINT) through: :meth:`Watchdog._stop_workers` and
:meth:`Watchdog._finish_stop` in the main process, :func:`honour_a_stop_sent_while_starting`
in each worker.

This is the one place Headroom reads Sanic's internals: ``app.manager`` and its
``_shutting_down``, ``transient_processes``, ``monitor_publisher``, ``worker_state`` and
``shutdown_signal``, each worker process's ``state``/``set_state``/``terminate``, the
``serving`` flag a worker sets in its shared state once its signal handlers are in place, and
in a worker ``app.m.state`` and ``app.state.is_running``. Checked against Sanic 24.12 and
25.12; tests kill a worker and expect it back, stop the proxy just as it starts, and stop it
while one worker serves a stream and another still starts, so a Sanic upgrade that changes
them fails loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine

from sanic import Sanic
from sanic.worker.constants import ProcessState

from headroom.observability import metrics
from headroom.workers import early_stop

log = logging.getLogger("headroom.workers")

_FINAL = ("TERMINATED", "FAILED", "COMPLETED", "NONE")  # the states Sanic's last step stops waiting for
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
        self._handle_signal: Callable[[int, object], None] | None = None  # set once workers run
        self._signalled: set[int] = set()  # workers sent their one stop signal

    def start(self) -> None:
        """Call in the main process's main thread once Sanic's manager exists."""
        self._take_over_stop_signals()
        noted = early_stop.requested()
        if noted is not None:  # a stop that came while the proxy was starting, before Sanic's handlers
            self._signals.append(noted)
            self._wake.set()
        self._thread.start()

    def _take_over_stop_signals(self) -> None:
        """Handle SIGTERM and SIGINT in this thread, not in the main thread's signal handler.

        Sanic's handler talks to its state manager over the main thread's connection; run as
        a signal handler it can interrupt the main thread in the middle of a call on that same
        connection and garble both (seen: SIGTERM during a worker-state sync, traceback, exit
        code 1 instead of 0). The handler now only queues the signal; this thread, with a
        connection of its own, runs :meth:`_stop_workers`, and through it Sanic's handler.
        """

        def queue(signum: int, frame: object) -> None:
            self._signals.append(signum)
            self._wake.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, queue)
        self._handle_signal = self._stop_workers

    def _stop_workers(self, signum: int, frame: object = None) -> None:
        """Sanic's stop, except that a worker still starting is not signalled: it is marked.

        Sanic's manager marks every live worker TERMINATED and sends it SIGINT. A worker is a
        fresh interpreter (multiprocessing's "spawn"): until Sanic installs its handlers, just
        before it serves, SIGINT raises KeyboardInterrupt wherever it lands — in an import, in
        a start-up hook — and the worker dies with a traceback and exit code 1 (seen with
        SIGTERM within ~0.1 s of the first worker serving, the second still starting).

        So a worker not yet serving (its ``serving`` flag, set once its handlers are in place)
        is only marked TERMINATED — the mark Sanic itself writes before signalling. It stops
        itself when it sees the mark (:func:`honour_a_stop_sent_while_starting`), or is
        signalled by :meth:`_finish_stop` once it serves, and :meth:`_finish_stop` kills it if
        it is still not serving when the grace is over. Serving workers are signalled now, by
        Sanic, and drain their streams for up to the grace. A second signal is Sanic's "kill
        everything", unchanged.
        """
        manager = self._app.manager
        if not manager._shutting_down:
            for process in list(manager.transient_processes):
                state = manager.worker_state.get(process.name, {})
                if not state.get("server") or not process.is_alive():
                    continue
                if state.get("serving"):
                    self._signalled.add(process.pid)  # Sanic's shutdown signals it
                else:
                    # Marked TERMINATED here as well, so Sanic's shutdown leaves it unsignalled.
                    process.set_state(ProcessState.TERMINATED, force=True)
        manager.shutdown_signal(signum, frame)

    def stop(self) -> None:
        """Call from the main process's stop hook: Sanic's manager has joined its workers."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(5.0)  # its last pass may still mark an exited worker ACKED
        self._settle_exited_workers()

    def _settle_exited_workers(self) -> None:
        """Mark each worker that exited on its own COMPLETED, as Sanic marks those it stops.

        Sanic's last step waits, up to 10 s, for every worker's state to be final. A worker
        that exited before Sanic's stop reached it (it stopped itself while starting, or
        :meth:`_finish_stop` marked it ACKED so that Sanic's wait for "ready" could end) kept
        a state that is not, and the stopped proxy lived 10 s more (seen: 20 s after SIGTERM
        on a loaded machine). By now Sanic no longer waits for "ready"."""
        manager = getattr(self._app, "manager", None)
        if manager is None:
            return
        try:
            for process in list(manager.transient_processes):
                entry = manager.worker_state.get(process.name)
                if entry is None or process.is_alive() or entry.get("state") in _FINAL:
                    continue  # gone from Sanic's books, still running, or final already
                manager.worker_state[process.name] = {**entry, "state": ProcessState.COMPLETED.name}
        except (KeyError, EOFError, BrokenPipeError, ConnectionError, OSError):
            pass  # Sanic's state manager has already shut down: nothing is left to wait for

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
                    self._finish_stop(manager, float(self._app.config.GRACEFUL_SHUTDOWN_TIMEOUT))
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

    def _finish_stop(self, manager, grace_s: float, margin_s: float = 5.0) -> None:
        """See every worker through a stop, whatever stage each was at, within the grace.

        * A worker that was still starting (marked, not signalled: :meth:`_stop_workers`) is
          signalled once it serves — its handlers are in place then. It may have seen the
          mark and be stopping already (:func:`honour_a_stop_sent_while_starting`); its
          handler then ignores the signal. Its own "ready" may also have overwritten the mark.
        * Sanic's manager waits for every worker's "ready" before it reads its messages, and
          the stop marks the workers TERMINATED, so that wait would never end and re-queue
          the stop message forever: the main process would spin. A worker that has exited is
          therefore marked acknowledged; the wait ends and the queued stop ends the run the
          normal way.
        * Bounded: a worker still not serving ``grace_s`` after the stop (stuck starting: it
          has nothing in flight) is killed; one still running ``margin_s`` after that (it had
          the grace to finish its streams, then its books to close) is killed too. The
          proxy never hangs on a worker that cannot stop.
        """
        started = time.monotonic()
        killed: set[int] = set()
        while True:
            alive = 0
            over = time.monotonic() - started
            for process in list(manager.transient_processes):
                state = manager.worker_state.get(process.name, {})
                if not state.get("server"):
                    continue
                if process.is_alive():
                    alive += 1
                    pid = process.pid
                    if state.get("serving") and pid not in self._signalled:
                        self._signalled.add(pid)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGINT)
                    never_served = pid not in self._signalled
                    if (over > grace_s + margin_s or (over > grace_s and never_served)) and pid not in killed:
                        killed.add(pid)
                        log.warning("worker %s (pid %s) did not stop within the grace (%gs): killing it",
                                    process.name, pid, grace_s)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
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


class WorkerApp(Sanic):
    """Sanic, except that a stop asked while the worker is starting is noted, not lost.

    Sanic's stop signal handler stops the event loop. The worker answers requests already
    while its "after start" hooks run (inside ``run_until_complete``); a stop then was spent
    on that run, and ``run_forever`` went on serving as if never stopped (seen: SIGTERM just
    after the first ``/health``, 1 launch in 40 on a loaded machine; the main process alive 20 s
    later). Noted instead, it is honoured by :func:`honour_a_stop_sent_while_starting` as soon
    as the worker serves. Under an ASGI server, whose loop is its own, stop is Sanic's.
    """

    stop_noted = False

    def stop(self, terminate: bool = True, unregister: bool = False) -> None:
        if self.state.is_running or self.state.asgi:
            super().stop(terminate=terminate, unregister=unregister)
        else:
            self.stop_noted = True


def honour_a_stop_sent_while_starting(app: Sanic, window_s: float = 3.0, poll_s: float = 0.1) -> Coroutine:
    """In a worker: stop exactly once, whether the stop came as a signal or as a mark.

    A worker still starting when the proxy is stopped is not signalled (a signal then would
    interrupt its imports: :meth:`Watchdog._stop_workers`): the main process marks it
    TERMINATED instead. So, for ``window_s`` after start-up, this task, running inside the
    serving loop, looks for the mark, and this worker's stop signals only take note (a stop
    whose handler ran while the start-up hooks run would be swallowed by uvloop before
    ``run_forever`` begins); the task then stops the worker — once the loop serves.

    Once, always. Sanic marks a serving worker TERMINATED and then signals it, so the task
    can read the mark while the signal waits in uvloop's queue; the signal is dispatched just
    after, to the handler the task has just put in place. With a handler that stopped the
    worker again, that second ``app.stop`` stopped the loop under Sanic's drain ("Event loop
    stopped before Future completed"): the worker died with its streams in flight and reported
    a failed start, on which Sanic's manager — still waiting for another worker's "ready" —
    SIGKILLed the whole process group (seen: SIGTERM just after the first of two workers
    serves). The mark and a signal can also both come when :meth:`Watchdog._finish_stop`
    signals a worker that serves after being marked, and a terminal's Ctrl-C reaches every
    worker besides the main process's own SIGINT. So after the window, this worker's signals
    go to a handler that stops it once and ignores the rest, instead of Sanic's own.
    """
    loop = asyncio.get_running_loop()
    if app.state.asgi:
        return asyncio.sleep(0)  # under an ASGI server, whose signal handling is its own
    # Also with one worker, where the main process serves alone (headroom.serve.serve_single):
    # there is no mark then, but a stop signal that lands in the start-up hooks is swallowed
    # all the same. So the signals are taken over now, in the hook that calls this, not when
    # the returned coroutine first runs: a stop in between would reach Sanic's handler.
    asked = early_stop.requested() is not None  # a stop that came before Sanic's handlers
    stopped = False

    def note() -> None:
        nonlocal asked
        asked = True

    def stop_once() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            app.stop(terminate=False)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, note)
    return _watch_for_a_stop(app, loop, window_s, poll_s, lambda: asked, stop_once)


async def _watch_for_a_stop(app: Sanic, loop: asyncio.AbstractEventLoop, window_s: float, poll_s: float,
                            asked_by_signal, stop_once) -> None:
    asked = False
    try:
        deadline = loop.time() + window_s
        while loop.time() < deadline or (asked and not app.state.is_running):
            await asyncio.sleep(poll_s)
            try:
                asked = asked or asked_by_signal() or app.m.state.get("state") == ProcessState.TERMINATED.name
            except (AttributeError, KeyError, EOFError, BrokenPipeError, ConnectionError):
                pass  # not one of Sanic's managed workers: the signals are all there is
            asked = asked or asked_by_signal() or getattr(app, "stop_noted", False)  # WorkerApp.stop
            if asked and app.state.is_running:
                break  # serving: a stop now ends run_forever, it is not swallowed
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_once)
    if asked:
        log.info("worker %s: stop requested during start-up; stopping", os.getpid())
        stop_once()
