"""``redis-server`` as a supervised child: the one launcher for the product, tests and benchmarks.

:class:`PrivateRedis` is what ``--workers N`` without ``--redis-url`` gets: the main process
starts it before the workers and hands them its ``unix://`` URL:

    server = PrivateRedis()
    url = server.start()          # raises RedisServerMissing with the fix when absent
    ...                           # workers use RedisStore(url)
    server.stop()                 # also registered with atexit

It listens on a Unix socket only (``--port 0``) inside a fresh ``0700`` directory, keeps
nothing on disk, and is supervised (:mod:`headroom.workers.supervisor`): restarted with
backoff if it dies (the workers' stores reconnect and reload their scripts by themselves),
and never outliving the proxy. Tests and benchmarks start theirs with :func:`redis_spec`
(TCP on a free port as well) through the same code.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from headroom.workers.supervisor import ChildFailed, ChildSpec, SupervisedChild, accepts_unix

INSTALL_HINT = (
    "Running more than one worker needs a Redis server for the state the workers share "
    "(rate limits, budgets, cache). Either install redis-server so that Headroom can start "
    "a private one (Debian/Ubuntu: apt-get install redis-server; Fedora: dnf install redis; "
    "macOS: brew install redis) or point Headroom at an existing Redis with "
    "--redis-url redis://HOST:6379/0. Alternatively run with --workers 1."
)

_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS
_DIR_PREFIX = "headroom-redis-"


class RedisServerMissing(RuntimeError):
    """No ``redis-server`` binary: the message says how to fix it."""


RedisServerFailed = ChildFailed  # redis-server exited or did not answer PING in time


def find_redis_server(binary: str | None = None) -> str:
    found = shutil.which(binary or "redis-server")
    if found is None:
        what = f"{binary!r} was not found" if binary else "redis-server was not found on PATH"
        raise RedisServerMissing(f"{what}. {INSTALL_HINT}")
    return found


def ping(address: str | tuple[str, int], timeout: float = 0.2) -> bool:
    """Whether a Redis answers PING at a Unix socket path or a (host, port)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


#: How a Redis bounded by ``maxmemory`` makes room: the least recently used key *that has a
#: TTL*. Every evictable kind of state (cached answers, CCR originals, memo entries, statistics)
#: has one; rate-limit buckets, budget counters and the deployment secret have none and are
#: never evicted (see :mod:`headroom.state.scripts`). ``allkeys-lru`` would evict buckets and
#: budgets; ``noeviction`` would refuse writes once full, failing every guard open.
EVICTION_POLICY = "volatile-lru"


def redis_spec(directory: Path, *, port: int = 0, unix_socket: str | None = None, binary: str | None = None,
               maxmemory: int | str | None = None, extra_args: tuple[str, ...] = ()) -> ChildSpec:
    """A ``redis-server`` keeping nothing on disk, on 127.0.0.1:``port`` (0: no TCP) and/or a
    Unix socket, ready once it answers PING. ``maxmemory`` (bytes, or Redis's ``"64mb"``)
    bounds its data, evicting with :data:`EVICTION_POLICY`."""
    args = [find_redis_server(binary), "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(directory), "--daemonize", "no", "--loglevel", "warning",
            "--logfile", str(directory / "redis.log")]
    if port:
        args += ["--bind", "127.0.0.1"]
    if unix_socket:
        args += ["--unixsocket", unix_socket, "--unixsocketperm", "700"]
    if maxmemory:
        args += ["--maxmemory", str(maxmemory), "--maxmemory-policy", EVICTION_POLICY]
    args += list(extra_args)
    address: str | tuple[str, int] = unix_socket if unix_socket else ("127.0.0.1", port)
    return ChildSpec("redis-server", args, ready=lambda: ping(address), log_path=directory / "redis.log")


def sweep_stale_directories(min_age: float = 60.0) -> int:
    """Remove the directories of private servers whose proxy was killed too hard to clean
    up (SIGKILL): ours, older than ``min_age`` seconds, and with no server listening.
    Returns how many were removed."""
    removed = 0
    now = time.time()
    for directory in Path(tempfile.gettempdir()).glob(f"{_DIR_PREFIX}*"):
        try:
            info = directory.lstat()
            if not directory.is_dir() or info.st_uid != os.getuid() or now - info.st_mtime < min_age:
                continue
            if accepts_unix(directory / "redis.sock"):
                continue
        except OSError:
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed += 1
    return removed


def private_directory(prefix: str = _DIR_PREFIX) -> Path:
    """A fresh ``0700`` directory, short enough for a Unix socket path inside it."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if len(str(directory / "redis.sock")) > _MAX_SOCKET_PATH:
        shutil.rmtree(directory, ignore_errors=True)
        directory = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(directory, 0o700)
    return directory


class PrivateRedis:
    """One supervised ``redis-server`` on a Unix socket in a private directory; the proxy
    bounds it with ``maxmemory`` = ``--store-max-mb``."""

    def __init__(self, binary: str | None = None, *, maxmemory: int | str | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.binary = binary
        self.maxmemory = maxmemory
        self.extra_args = extra_args
        self.child: SupervisedChild | None = None
        self.directory: Path | None = None
        self.socket_path: str | None = None
        self.url: str | None = None

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child else None

    def running(self) -> bool:
        return self.child is not None and self.child.running()

    def start(self, timeout: float = 10.0) -> str:
        """Start the server, wait for PING, supervise it; return ``unix://…/redis.sock``."""
        if self.running():
            assert self.url is not None
            return self.url
        find_redis_server(self.binary)  # fail with the fix before making anything
        sweep_stale_directories()
        self.directory = private_directory()
        self.socket_path = str(self.directory / "redis.sock")
        spec = redis_spec(self.directory, unix_socket=self.socket_path, binary=self.binary,
                          maxmemory=self.maxmemory, extra_args=self.extra_args)
        self.child = SupervisedChild(dataclasses.replace(spec, start_timeout=timeout))
        try:
            self.child.start()
        except ChildFailed:
            self.stop()
            raise
        self.child.supervise()
        self.url = f"unix://{self.socket_path}"
        return self.url

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server and remove its directory. Idempotent."""
        if self.child is not None:
            self.child.stop(timeout)
            self.child = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        self.url = None

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
