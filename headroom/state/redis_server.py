"""A private ``redis-server`` for ``--workers N`` without ``--redis-url``.

The proxy's main process starts it before the workers and hands them its ``unix://`` URL:

    server = PrivateRedis()
    url = server.start()          # raises RedisServerMissing with the fix when absent
    ...                           # workers use RedisStore(url)
    server.stop()                 # also registered with atexit

It listens on a Unix socket only (``--port 0``) inside a fresh ``0700`` directory, keeps
nothing on disk (``--save "" --appendonly no``) and runs in its own session, so a Ctrl-C
meant for the proxy does not kill it before the workers have drained. It cannot outlive
the proxy: ``stop()`` runs at exit and, on Linux, the child asks the kernel for SIGTERM
when its parent dies (``PR_SET_PDEATHSIG``), which covers a proxy killed with SIGKILL.
Call ``start()`` from the main thread: the death signal follows the thread that forked.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INSTALL_HINT = (
    "Running more than one worker needs a Redis server for the state the workers share "
    "(rate limits, budgets, cache). Either install redis-server so that Headroom can start "
    "a private one (Debian/Ubuntu: apt-get install redis-server; Fedora: dnf install redis; "
    "macOS: brew install redis) or point Headroom at an existing Redis with "
    "--redis-url redis://HOST:6379/0. Alternatively run with --workers 1."
)

_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS

try:  # loaded up front: the child only makes the call, between fork and exec
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):  # pragma: no cover
    _prctl = None
_PR_SET_PDEATHSIG = 1


class RedisServerMissing(RuntimeError):
    """No ``redis-server`` binary: the message says how to fix it."""


class RedisServerFailed(RuntimeError):
    """``redis-server`` exited or did not answer PING in time; the message holds its log."""


def _child_setup(parent_pid: int):
    def setup() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return setup


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.connect(str(path))
            return True
        except OSError:
            return False


def sweep_stale_directories(min_age: float = 60.0) -> int:
    """Remove the directories of private servers whose proxy was killed too hard to clean
    up (SIGKILL): ours, older than ``min_age`` seconds, and with no server listening.
    Returns how many were removed."""
    removed = 0
    now = time.time()
    for directory in Path(tempfile.gettempdir()).glob("headroom-redis-*"):
        try:
            info = directory.lstat()
            if not directory.is_dir() or info.st_uid != os.getuid() or now - info.st_mtime < min_age:
                continue
            if _listening(directory / "redis.sock"):
                continue
        except OSError:
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed += 1
    return removed


def _ping(path: str, timeout: float = 0.2) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class PrivateRedis:
    """One supervised ``redis-server`` child on a Unix socket in a private directory."""

    def __init__(self, binary: str | None = None, *, maxmemory: str | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.binary = binary
        self.maxmemory = maxmemory
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.directory: Path | None = None
        self.socket_path: str | None = None
        self.url: str | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _resolve_binary(self) -> str:
        found = shutil.which(self.binary or "redis-server")
        if found is None:
            what = f"{self.binary!r} was not found" if self.binary else "redis-server was not found on PATH"
            raise RedisServerMissing(f"{what}. {INSTALL_HINT}")
        return found

    def _make_directory(self) -> Path:
        directory = Path(tempfile.mkdtemp(prefix="headroom-redis-"))  # mode 0700
        if len(str(directory / "redis.sock")) > _MAX_SOCKET_PATH:
            shutil.rmtree(directory, ignore_errors=True)
            directory = Path(tempfile.mkdtemp(prefix="headroom-redis-", dir="/tmp"))
        os.chmod(directory, 0o700)
        return directory

    def start(self, timeout: float = 10.0) -> str:
        """Start the server, wait for PING, return ``unix://…/redis.sock``."""
        if self.running():
            assert self.url is not None
            return self.url
        binary = self._resolve_binary()
        sweep_stale_directories()
        self.directory = self._make_directory()
        self.socket_path = str(self.directory / "redis.sock")
        logfile = self.directory / "redis.log"
        args = [
            binary,
            "--port", "0",
            "--unixsocket", self.socket_path,
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--logfile", str(logfile),
            "--loglevel", "warning",
        ]
        if self.maxmemory:
            args += ["--maxmemory", self.maxmemory, "--maxmemory-policy", "noeviction"]
        args += list(self.extra_args)
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_child_setup(os.getpid()),
            start_new_session=True,
            close_fds=True,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                log = self._log_tail()
                code = self.proc.returncode
                self.stop()
                raise RedisServerFailed(f"redis-server exited with status {code} at start-up:\n{log}")
            if _ping(self.socket_path):
                break
            if time.monotonic() >= deadline:
                log = self._log_tail()
                self.stop()
                raise RedisServerFailed(f"redis-server did not answer PING within {timeout:.0f}s:\n{log}")
            time.sleep(0.01)
        self.url = f"unix://{self.socket_path}"
        return self.url

    def _log_tail(self) -> str:
        try:
            return (self.directory / "redis.log").read_text(errors="replace")[-2000:]  # type: ignore[operator]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL) and remove its directory. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        self.url = None
        atexit.unregister(self.stop)

    def __enter__(self) -> "PrivateRedis":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
