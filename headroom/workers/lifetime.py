"""The lifetime of the processes Python's multiprocessing starts for Sanic: they outlive the
workers' drain when the whole process group is stopped, and never outlive the main process.

Sanic's main process starts, with multiprocessing's "spawn", a *manager* process that holds
the workers' shared state (every worker and the main process talk to it until the very end),
the HTTP workers, and, through multiprocessing, its resource tracker. All of them are in the
main process's process group, which is what systemd (``KillMode=control-group``), a
container's shared PID namespace and a terminal's Ctrl-C signal as a whole:

* **A group stop.** The manager died of the group's SIGTERM at once, while the main process
  and the workers still needed it for their drain: three tracebacks and exit code 1. The
  manager is therefore started with SIGINT and SIGTERM *blocked* (:class:`SpawnShield`):
  a spawned process inherits its parent thread's signal mask, and Python never unblocks
  it, so the group's signals stay pending in it forever; Sanic stops it with a message at
  the very end, as it always did. The standard library protects its own resource tracker
  the same way (``multiprocessing.resource_tracker``, bpo-33613). The main process's own
  signals are only deferred, not lost: they are handled once the mask is lifted.
* **A killed main process** (SIGKILL, the OOM killer). The manager and the workers did not
  notice and lived on (one manager by 18 minutes, workers holding the port). Each now asks
  the kernel for a signal when the main process dies (``PR_SET_PDEATHSIG``): a worker from
  the app factory, which runs in it (:func:`die_with_parent`); the manager, which runs none
  of our code, from a function it runs when it unpickles a key it is asked to look up
  (:func:`bind_to_main_process`). The resource tracker exits by itself once they are gone.
  Workers get SIGKILL, not a stop: nobody is left to see a drain through, their manager
  dies with them, and a restarted proxy needs the port.

Headroom's own helpers (the private ``redis-server``, the model server) need none of this:
:mod:`headroom.workers.supervisor` starts them in sessions of their own, so a group's
signal never reaches them (the main process stops them once the workers have drained),
with a death signal of their own.

No extra process: the manager's guard is one thread that sleeps (~1 MB). Relies on
Sanic 25.12 creating the manager before ``main_process_ready`` and the workers after it;
tests/test_shutdown.py stops the group and kills the main process, so a Sanic that changes
this fails them.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from multiprocessing import resource_tracker
from multiprocessing.managers import RemoteError

log = logging.getLogger("headroom.workers")

_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_PR_SET_PDEATHSIG = 1
_POLL_S = 1.0  # where the kernel offers no death signal: how often the parent is checked

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):  # pragma: no cover
    _prctl = None


def request_death_signal(sig: int) -> bool:
    """``PR_SET_PDEATHSIG``: the kernel sends ``sig`` to this process when the thread that
    started it exits. One system call and nothing else, so it is safe between fork and exec
    (:mod:`headroom.workers.supervisor`). False where the kernel offers no such signal."""
    return _prctl is not None and _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> bool:
    """Ask for ``sig`` when the process that started this one dies (for Sanic's processes:
    when the main process's main thread exits, which lives as long as it does).

    Call from a thread that lives as long as the process: the kernel keeps the request per
    thread. ``parent``: the pid expected as the parent; if it has already died (before the
    request took effect), the signal is sent now. False where the kernel offers no such signal.
    """
    parent = os.getppid() if parent is None else parent
    if not request_death_signal(sig):
        return False
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True


def _guard(parent: int) -> None:
    if die_with_parent(signal.SIGKILL, parent):
        threading.Event().wait()  # the request lives with this thread: it sleeps for good
    while os.getppid() == parent:  # no death signal here: look for it
        threading.Event().wait(_POLL_S)
    os.kill(os.getpid(), signal.SIGKILL)


def _start_guard(parent: int) -> str:
    """Runs inside Sanic's manager process, as it unpickles :class:`_GuardKey`; returns the
    key it then looks up (absent: the lookup answers the default)."""
    if os.getpid() != parent:  # never in the main process itself
        threading.Thread(target=_guard, args=(parent,), name="headroom-die-with-parent", daemon=True).start()
    return "headroom-die-with-parent"


class _GuardKey:
    """Pickled in the main process, unpickled in the manager: unpickling calls
    :func:`_start_guard` there."""

    def __reduce__(self) -> tuple:
        return _start_guard, (os.getpid(),)


def bind_to_main_process(worker_state: Mapping) -> None:
    """Make Sanic's manager process die with the main process.

    The manager runs no code of ours, and Sanic offers no hook into it; but it unpickles
    whatever it is asked to look up in the shared ``worker_state`` dict it serves, and
    unpickling may call a function. So the lookup of :class:`_GuardKey` starts the guard
    thread there (one thread that sleeps), and stores nothing. Fails open: a proxy whose
    manager could not be bound still serves (and is only as tidy when killed as before).
    """
    try:
        worker_state.get(_GuardKey())
    except (RemoteError, EOFError, OSError) as exc:  # an error raised in the manager, or its connection gone
        log.warning("Sanic's manager process will not stop by itself if this process is killed: %s", exc)


class SpawnShield:
    """Block SIGINT and SIGTERM in this thread until :meth:`lift`: processes spawned meanwhile
    keep them blocked for good; this thread's own are deferred, and handled once lifted.

    Use as a context manager around the start of Sanic (the block ends at the latest there),
    and lift it, in the same thread, before the workers are spawned: they must stop on a signal.
    """

    def __init__(self) -> None:
        self._blocked = False

    def __enter__(self) -> SpawnShield:
        # Started first: starting multiprocessing's resource tracker unblocks both signals in
        # the calling thread (its own shield) and would lift this one early.
        resource_tracker.ensure_running()
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        self._blocked = True
        return self

    def lift(self) -> None:
        if self._blocked:
            self._blocked = False
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    def __exit__(self, *exc: object) -> None:
        self.lift()
