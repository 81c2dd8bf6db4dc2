"""How the app ASGI servers load (``headroom.proxy.server:app``) is built.

``headroom proxy`` has a main process of its own that prepares what its workers share
before they start (a metrics directory, a private Redis, the model server). Under
``gunicorn headroom.proxy.server:app --workers 4 --worker-class uvicorn.workers.UvicornWorker``
there is no such process of ours, so every worker works out the same answers on its own
when it builds the app, configured from ``HEADROOM_*`` variables:

* **Metrics are summed over the workers.** gunicorn's workers are forks of one master, so
  each points ``PROMETHEUS_MULTIPROC_DIR`` at a directory named after that master's pid,
  and ``/metrics`` in any worker reads them all. A directory left by a master that is gone
  is removed, so a reused pid never inherits old counts. A ``PROMETHEUS_MULTIPROC_DIR``
  set by the operator wins.
* **Several workers need Redis.** Each worker keeping rate limits, budgets and the cache
  in its own memory would give every caller N times the limits; with more than one
  gunicorn worker and no ``HEADROOM_REDIS_URL`` the workers refuse to boot, with a message
  that says so (gunicorn then stops: "Worker failed to boot").

LLMLingua needs a running ``headroom model-server`` (``HEADROOM_MODEL_SERVER_URL``): the
workers do not start one.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from sanic import Sanic

from headroom.config import ConfigError, ProxyConfig, build_config
from headroom.observability import metrics
from headroom.proxy.factory import create_app

log = logging.getLogger("headroom.proxy")

METRICS_DIR_PREFIX = "headroom-metrics-gunicorn-"


def gunicorn_master() -> int | None:
    """The pid of the gunicorn master when this process is one of its workers."""
    if "gunicorn.arbiter" not in sys.modules or "gunicorn.workers.base" not in sys.modules:
        return None
    return os.getppid()


def gunicorn_workers() -> int | None:
    """How many workers this gunicorn runs, read the way gunicorn read it (command line,
    ``GUNICORN_CMD_ARGS``, ``WEB_CONCURRENCY``, its config file); None when unknown."""
    try:
        from gunicorn.app.wsgiapp import WSGIApplication

        cwd = os.getcwd()
        try:
            settings = WSGIApplication().cfg
        finally:
            os.chdir(cwd)  # gunicorn's config loading may chdir; keep the worker where it was
        return int(settings.workers)
    except (Exception, SystemExit):  # noqa: BLE001 - unknown is an answer: the check is skipped
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def shared_metrics_dir(master: int, root: Path | None = None) -> Path | None:
    """This master's metrics directory (made if missing, mode 0700, ours alone), after removing
    the directories of masters that are gone. None when it cannot be used safely."""
    root = root or Path(tempfile.gettempdir())
    for stale in root.glob(f"{METRICS_DIR_PREFIX}*"):
        pid = stale.name.removeprefix(METRICS_DIR_PREFIX)
        if pid.isdigit() and int(pid) != master and not _alive(int(pid)) and stale.owner() == _user():
            shutil.rmtree(stale, ignore_errors=True)
    path = root / f"{METRICS_DIR_PREFIX}{master}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError:
        return None
    if not path.is_dir() or path.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o077:
        log.warning("metrics directory %s is not private to this user: each worker reports its own metrics", path)
        return None
    return path


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def check_shared_state(config: ProxyConfig, workers: int | None) -> None:
    if workers and workers > 1 and not config.redis_url:
        raise ConfigError(
            f"{workers} gunicorn workers need shared state: set HEADROOM_REDIS_URL (redis://host:6379), "
            "or run one worker. Without it every worker would keep its own rate limits, budgets and cache."
        )


def create_asgi_app() -> Sanic:
    config = build_config()
    master = gunicorn_master()
    if master is not None:
        check_shared_state(config, gunicorn_workers())
        if not metrics.multiprocess_dir():
            path = shared_metrics_dir(master)
            if path is not None:
                os.environ[metrics.ENV_VAR] = str(path)
                metrics.sync_value_class()
    return create_app(config)
