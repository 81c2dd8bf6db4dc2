"""The ASGI app's own start-up decisions (see headroom.proxy.asgi); the real gunicorn line is
tested in tests/test_gunicorn.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from headroom.config import ConfigError, ProxyConfig
from headroom.proxy.asgi import METRICS_DIR_PREFIX, check_shared_state, shared_metrics_dir


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_metrics_directory_is_private_and_dead_masters_directories_are_swept(tmp_path):
    gone = tmp_path / f"{METRICS_DIR_PREFIX}{_dead_pid()}"
    gone.mkdir()
    (gone / "counter_1.db").write_bytes(b"old counts")
    alive = tmp_path / f"{METRICS_DIR_PREFIX}{os.getpid()}"
    alive.mkdir()
    path = shared_metrics_dir(os.getppid(), tmp_path)
    assert path == tmp_path / f"{METRICS_DIR_PREFIX}{os.getppid()}"
    assert path.stat().st_mode & 0o777 == 0o700
    assert not gone.exists() and alive.exists()
    assert shared_metrics_dir(os.getppid(), tmp_path) == path  # a sibling worker finds the same one


def test_a_metrics_directory_others_can_write_is_not_used(tmp_path):
    path = tmp_path / f"{METRICS_DIR_PREFIX}{os.getppid()}"
    path.mkdir(mode=0o777)
    path.chmod(0o777)
    assert shared_metrics_dir(os.getppid(), tmp_path) is None
    path.rmdir()
    path.symlink_to(tmp_path)
    assert shared_metrics_dir(os.getppid(), tmp_path) is None


@pytest.mark.parametrize("workers, redis_url, refused", [
    (4, None, True), (1, None, False), (None, None, False), (4, "redis://r:6379", False),
])
def test_several_workers_need_redis(workers, redis_url, refused):
    config = ProxyConfig(redis_url=redis_url)
    if refused:
        with pytest.raises(ConfigError, match="HEADROOM_REDIS_URL"):
            check_shared_state(config, workers)
    else:
        check_shared_state(config, workers)
