"""Supervised child processes: started, health-checked, restarted with backoff, never orphaned.

The proxy's main process runs helpers beside its HTTP workers (a private ``redis-server``,
the LLMLingua model server). Each is a :class:`SupervisedChild`:

    child = SupervisedChild(ChildSpec("redis-server", argv, ready=lambda: ping(path)))
    child.start()        # spawn, wait until ``ready()`` says yes (ChildFailed with its log if not)
    child.supervise()    # optional: a thread restarts it with backoff whenever it exits
    child.stop()         # SIGTERM, then SIGKILL; also registered with atexit

A child cannot outlive the proxy: ``stop()`` runs at exit, and on Linux the child asks the
kernel for SIGTERM when the thread that forked it dies (``PR_SET_PDEATHSIG``), which covers
a proxy killed with SIGKILL. So the first start happens on the calling thread and every
restart on the supervising thread, which lives until ``stop()``. Children run in their own
session, so a Ctrl-C meant for the proxy reaches them only through ``stop()``, after the
HTTP workers have drained.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from headroom.workers.lifetime import request_death_signal

log = logging.getLogger("headroom.workers")


class ChildFailed(RuntimeError):
    """The child exited or did not become ready in time; the message holds its log's tail."""


@dataclass(frozen=True)
class ChildSpec:
    """What to run and how to tell that it serves."""

    name: str  # for logs: "redis-server", "model server"
    argv: list[str]
    ready: Callable[[], bool]  # cheap, bounded check (a PING, a connect)
    log_path: Path | None = None  # the child's stdout and stderr; None: the parent's stderr
    env: dict[str, str] | None = None
    start_timeout: float = 10.0
    backoff: tuple[float, float] = (0.2, 10.0)  # first and longest wait between restarts
    stable_after: float = 30.0  # a child that ran this long before dying restarts after the first wait again
    stop_signal: int = signal.SIGTERM


def accepts_unix(path: str | Path, timeout: float = 0.2) -> bool:
    """Whether something listens on this Unix socket (a cheap readiness check)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            return True
        except OSError:
            return False


def _child_setup(parent_pid: int) -> Callable[[], None]:
    def setup() -> None:
        request_death_signal(signal.SIGTERM)  # the binding is loaded up front: only the call is made here
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return setup


class SupervisedChild:
    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_restart: list[Callable[[SupervisedChild], None]] = []
        self._spawned_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def on_restart(self, callback: Callable[[SupervisedChild], None]) -> None:
        """Call ``callback(child)`` after each restart (metrics, logs)."""
        self._on_restart.append(callback)

    # -- start and stop -------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the child and wait until it is ready; raise :class:`ChildFailed` if it is not."""
        with self._lock:
            self._stopping.clear()
            self._spawn()
        atexit.register(self.stop)
        self._wait_ready()

    def _spawn(self) -> None:
        spec = self.spec
        self._spawned_at = time.monotonic()
        out = open(spec.log_path, "ab") if spec.log_path else sys.stderr.fileno()  # handed to the child
        try:
            self.proc = subprocess.Popen(
                spec.argv,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=spec.env,
                preexec_fn=_child_setup(os.getpid()),  # async-signal-safe: one prctl call
                start_new_session=True,
                close_fds=True,
            )
        finally:
            if not isinstance(out, int):
                out.close()

    def _wait_ready(self) -> None:
        spec, proc = self.spec, self.proc
        assert proc is not None
        deadline = time.monotonic() + spec.start_timeout
        while True:
            if proc.poll() is not None:
                code = proc.returncode
                self.stop()
                raise ChildFailed(f"{spec.name} exited with status {code} at start-up:\n{self.log_tail()}")
            if spec.ready():
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise ChildFailed(f"{spec.name} was not ready within {spec.start_timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.01)

    def log_tail(self, chars: int = 2000) -> str:
        if self.spec.log_path is None:
            return "(no log)"
        try:
            return self.spec.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop supervising and terminate the child (its stop signal, then SIGKILL). Idempotent."""
        self._stopping.set()
        with self._lock:
            proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(self.spec.stop_signal)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            self._thread = None
        atexit.unregister(self.stop)

    def kill(self) -> None:
        """SIGKILL the child as a crash would (fault-injection in tests); supervision restarts it."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    # -- supervision ----------------------------------------------------------------------

    def supervise(self, interval: float = 0.2) -> None:
        """Restart the child whenever it exits, until :meth:`stop`. The wait before a restart
        doubles while the child keeps dying young (a crash loop costs little), and starts
        from the first wait again once it has run for ``stable_after`` seconds."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, args=(interval,), daemon=True,
                                            name=f"headroom-supervise-{self.spec.name}")
            self._thread.start()

    def _watch(self, interval: float) -> None:
        first, longest = self.spec.backoff
        wait = first
        while not self._stopping.wait(interval):
            proc = self.proc
            if proc is None or proc.poll() is None:
                continue
            if time.monotonic() - self._spawned_at >= self.spec.stable_after:
                wait = first
            log.warning("%s (pid %s) exited with status %s: restarting it in %.1fs",
                        self.spec.name, proc.pid, proc.returncode, wait)
            if self._stopping.wait(wait):
                return
            wait = min(longest, wait * 2)
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._spawn()  # on this thread: the death signal follows it
                except OSError as exc:
                    log.error("%s could not be restarted: %s", self.spec.name, exc)
                    continue
            self.restarts += 1
            for callback in self._on_restart:
                try:
                    callback(self)
                except Exception:  # a callback must not end supervision
                    log.exception("restart callback for %s failed", self.spec.name)
