"""Session fixtures: the mock upstream, real proxies and real Redis servers, each a real
process on a free port (:mod:`testkit.services`).

The mock upstream is the only fake. Proxies are launched through the real CLI
(``python -m headroom proxy``), exactly as a user would start them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testkit import ROOT, leftovers, services
from testkit.lingua import require_llmlingua
from testkit.services import REDIS_BIN, Mock, Proxy, RedisProc, start_mock, stop

_TIKTOKEN_DIR = ROOT / ".tiktoken"
if _TIKTOKEN_DIR.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_TIKTOKEN_DIR))

REQUIRE_REDIS_ENV = "HEADROOM_REQUIRE_REDIS"  # set in CI: a missing binary fails instead of skipping

# Every process the tests start carries this run's token; at the end, any still alive fails it.
_SESSION_TOKEN = leftovers.mark_session()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus) -> None:
    """Fail the run if a process it started is still alive (session fixtures are stopped by
    now): list them, then kill them, so the next run starts clean."""
    left = leftovers.wait_and_find(_SESSION_TOKEN)
    if not left:
        return
    lines = "\n".join(f"  {process}" for process in left)
    message = f"the test run left {len(left)} process(es) running (now killed):\n{lines}"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write("\n")
        reporter.write_sep("=", "processes left behind", red=True)
        reporter.write_line(message)
    else:
        print(message)
    leftovers.kill(left)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def mock(tmp_path_factory) -> Mock:
    handle = start_mock(tmp_path_factory.mktemp("mock") / "mock.log")
    yield handle
    stop(handle.proc)


@pytest.fixture(scope="session")
def start_proxy(tmp_path_factory, mock):
    """``start_proxy(*flags, upstream=None, env=None)`` → a running :class:`Proxy`;
    every proxy is stopped at session end."""
    started: list[Proxy] = []

    def start(*flags: str, upstream: str | None = None, env: dict | None = None) -> Proxy:
        log = tmp_path_factory.mktemp("proxy") / "proxy.log"
        proxy = services.start_proxy(log, upstream or mock.url, *flags, env=env)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        stop(proxy.proc)


@pytest.fixture(scope="session")
def proxy(start_proxy) -> Proxy:
    """The shared proxy for transparency tests: defaults, except that the response cache is off.

    Tests steer the mock with headers, which (rightly) are not part of the cache key; with
    the cache on, a later test could be answered from an earlier one's identical body.
    The cache has tests of its own.
    """
    return start_proxy("--no-cache")


@pytest.fixture
def fresh_mock(mock) -> Mock:
    mock.reset()
    return mock


def _require_redis() -> None:
    if REDIS_BIN is None:
        if os.environ.get(REQUIRE_REDIS_ENV):
            pytest.fail(f"{REQUIRE_REDIS_ENV} is set but redis-server is not installed")
        pytest.skip("redis-server not installed")


def _running_redis():
    _require_redis()
    server = RedisProc()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_server():
    yield from _running_redis()


@pytest.fixture
def own_redis():
    """A redis-server for one test (to kill and restart without disturbing the others)."""
    yield from _running_redis()


@pytest.fixture(scope="module")
def module_redis():
    """A redis-server for one test module (whose dump then holds that module's traffic only)."""
    yield from _running_redis()


@pytest.fixture(scope="session")
def lingua_model(tmp_path_factory) -> Path:
    """A tiny LLMLingua-2-shaped model folder (real BERT token classifier, built in seconds)."""
    require_llmlingua()
    from testkit.tiny_lingua import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("lingua"))


@pytest.fixture(scope="session")
def lingua_export(lingua_model) -> Path:
    """Its ONNX export (fp32 and int8) in the sibling folder ``<model>-onnx``, where
    ``--llmlingua-backend auto`` finds it."""
    from headroom.models.export import export_onnx

    out = lingua_model.parent / f"{lingua_model.name}-onnx"
    if not out.exists():
        export_onnx(str(lingua_model), str(out), int8=True)
    return out
