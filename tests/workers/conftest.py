"""Model-server fixtures: real ``headroom model-server`` processes on the tiny real model
(``lingua_model`` in tests/conftest.py; without the ML stack the tests skip, or fail when
HEADROOM_REQUIRE_LLMLINGUA=1)."""

from __future__ import annotations

import faulthandler
import os
import shutil
import tempfile

import pytest

from testkit.model_servers import ServerProcess
from testkit.ports import free_port


@pytest.fixture(autouse=True)
def no_hang():
    """A last resort: a test stuck for 5 minutes ends the run (with every thread's stack)."""
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def socket_dir():
    """A private (0700) folder short enough for a Unix socket path."""
    path = tempfile.mkdtemp(prefix="hr-ms-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_server(lingua_model, socket_dir, tmp_path):
    """Start a model server on the tiny model; ``tcp=True`` for TCP, else a Unix socket."""
    started: list[ServerProcess] = []

    def start(tcp: bool = False, **options) -> ServerProcess:
        options.setdefault("model", str(lingua_model))
        options.setdefault("backend", "torch")
        options.setdefault("device", "cpu")
        options.setdefault("threads", 1)  # the test process and other servers share the cores
        if tcp:
            options.update(host="127.0.0.1", port=free_port())
        else:
            options.setdefault("socket_path", os.path.join(socket_dir, f"m{len(started)}.sock"))
        server = ServerProcess(options, tmp_path / f"server{len(started)}.log")
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
