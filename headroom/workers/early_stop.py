"""A stop (SIGTERM, SIGINT) that comes while ``headroom proxy`` starts, before the server's
own handlers are in place: noted, then honoured at the next safe point.

Why not exit from the signal handler: a handler runs between any two bytecodes of the main
thread, so an exception raised there lands anywhere: inside importlib's module-lock
callback it was printed as "Exception ignored" and swallowed, and the proxy went on to serve
as if never stopped (seen: 2 of 40 launches stopped 0.05-0.15 s in). Without a handler the
default action killed the process outright (exit -15), its helpers left to notice.

The safe points: :func:`headroom.serve.run_proxy` before each helper it starts and before
the server (exit 0, helpers stopped); then, once the server runs, the worker's start-up
watch (:func:`headroom.workers.watchdog.honour_a_stop_sent_while_starting`) and the
watchdog of several workers (:meth:`headroom.workers.watchdog.Watchdog.start`), which stop
it as they stop any other.
"""

from __future__ import annotations

import os
import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_requested: list[int] = []  # the stop signals received, in order (the handler only appends)


def _note(signum: int, frame: object) -> None:
    if _requested:
        # A second stop while a step still runs (a model server that takes long to answer, a
        # tokenizer download that hangs): the signal's own action, at once, as Ctrl-C twice
        # does anywhere. The helpers die with this process (their death signal).
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _requested.append(signum)


def note_stop_signals() -> None:
    """From now on, until something else takes them over, a stop signal is only noted."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _note)


def requested() -> int | None:
    """The first stop signal noted, or None."""
    return _requested[0] if _requested else None
