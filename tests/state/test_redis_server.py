"""The private redis-server the proxy starts for --workers N without --redis-url."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("redis")

from headroom.state.redis_store import RedisStore
from headroom.state.store import GuardRequest
from headroom.workers.redis_server import (
    PrivateRedis,
    RedisServerMissing,
    sweep_stale_directories,
)
from testkit.services import process_gone
from testkit.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.usefixtures("redis_server")
async def test_private_redis_starts_answers_and_is_gone_after_stop():
    server = PrivateRedis()
    url = server.start()
    try:
        assert url.startswith("unix://") and url.endswith("/redis.sock")
        directory = server.directory
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        assert stat.S_ISSOCK(os.stat(server.socket_path).st_mode)
        store = RedisStore(url)
        try:
            assert await store._run("PING") == b"PONG"
            assert (await store.guard(GuardRequest("x", rpm=5))).allowed
            flat = [item.decode() for item in await store._run("CONFIG", "GET", "*")]
            conf = dict(zip(flat[::2], flat[1::2]))
            assert conf["port"] == "0" and conf["save"] == "" and conf["appendonly"] == "no"
        finally:
            await store.close()
        pid = server.pid
    finally:
        server.stop()
    assert process_gone(pid) and not directory.exists() and server.url is None
    server.stop()  # idempotent


@pytest.mark.usefixtures("redis_server")
def test_private_redis_dies_with_its_parent():
    code = ("import time\nfrom headroom.workers.redis_server import PrivateRedis\n"
            "p = PrivateRedis(); p.start(); print(p.pid, p.directory, flush=True); time.sleep(30)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=ROOT)
    directory = None
    try:
        pid_text, directory = parent.stdout.readline().decode().split(maxsplit=1)
        pid, directory = int(pid_text), Path(directory.strip())
        assert not process_gone(pid)
        parent.kill()  # SIGKILL: no atexit; the kernel's parent-death signal must do it
        parent.wait()
        wait_for(lambda: process_gone(pid), timeout=3, what="the private redis-server gone with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if directory is not None:  # a SIGKILLed parent cannot clean up after itself
            shutil.rmtree(directory, ignore_errors=True)


def test_missing_binary_says_how_to_fix(monkeypatch):
    with pytest.raises(RedisServerMissing) as err:
        PrivateRedis(binary="no-such-redis-server-binary").start()
    message = str(err.value)
    assert "--redis-url" in message and "install" in message and "--workers 1" in message
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RedisServerMissing, match="redis-server was not found on PATH"):
        PrivateRedis().start()


@pytest.mark.usefixtures("redis_server")
def test_sweep_removes_only_dead_old_directories(monkeypatch):
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="hrsw-", dir="/tmp"))  # short: sockets need short paths
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    live = PrivateRedis()
    live.start()
    try:
        assert live.directory.parent == base
        dead = base / "headroom-redis-dead"
        dead.mkdir()
        (dead / "redis.sock").touch()  # a socket file nobody listens on
        young = base / "headroom-redis-young"
        young.mkdir()
        other = base / "unrelated"
        other.mkdir()
        old = time.time() - 3600
        for directory in (dead, other, live.directory):
            os.utime(directory, (old, old))
        assert sweep_stale_directories() == 1
        assert not dead.exists() and young.exists() and other.exists() and live.directory.exists()
    finally:
        live.stop()
        shutil.rmtree(base, ignore_errors=True)
