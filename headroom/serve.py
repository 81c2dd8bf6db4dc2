"""The proxy's main process: check the configuration, start the supervised helpers the
workers need (a private Redis, the LLMLingua model server), then the Sanic workers.

Nothing heavy is imported here: the main process stays small and ``/health`` answers within
a second of launch, whatever is still loading in the helpers.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import signal
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from headroom import __version__, formats
from headroom.config import ProxyConfig
from headroom.models.probe import INSTALL_HINT, choose_device, llmlingua_installed
from headroom.workers import early_stop

if TYPE_CHECKING:
    from sanic import Sanic

    from headroom.workers.lifetime import SpawnShield


def _state_line(config: ProxyConfig) -> str:
    if not config.redis_url:
        return "in memory"
    from headroom.state.redis_url import redact_url

    return f"redis {redact_url(config.redis_url)}"


def _limits_line(config: ProxyConfig) -> str:
    if not config.rate_limit or not (config.rpm or config.tpm):
        return "off"
    return f"{config.rpm or 'no'} rpm, {config.tpm or 'no'} tpm per key"


def _budget_line(config: ProxyConfig) -> str:
    if not config.budget:
        return "none"
    return f"${config.budget:g} {config.budget_period} ({config.budget_scope})"


def banner(config: ProxyConfig) -> str:
    def on(flag: bool) -> str:
        return "on" if flag else "off"

    workers = f"{config.workers} worker{'s' if config.workers != 1 else ''}"
    lines = [
        f"Headroom {__version__} listening on http://{config.host}:{config.port} ({workers})",
        *(f"  {provider:<9} -> {getattr(config, option)}" for provider, option in formats.UPSTREAMS),
        f"  optimize: {on(config.optimize)}   max body: {config.max_body_mb:g} MiB   "
        f"timeouts: connect {config.connect_timeout:g}s, upstream silence {config.request_timeout:g}s",
        f"  state: {_state_line(config)}   cache: {on(config.cache)}   "
        f"rate limit: {_limits_line(config)}   budget: {_budget_line(config)}",
        f"  request log: {config.log_file or 'off'}{' (with messages)' if config.log_messages else ''}   "
        f"admin token: {'set' if config.admin_token else 'none'}",
    ]
    return "\n".join(lines)


def startup_warnings(config: ProxyConfig) -> list[str]:
    warnings = []
    if not config.loopback_only and not config.admin_token:
        warnings.append(
            f"listening on {config.host} without --admin-token: anyone who can reach this port can read "
            "/stats, /metrics and stored originals (/v1/retrieve). Set HEADROOM_ADMIN_TOKEN."
        )
    return warnings


def llmlingua_line(config: ProxyConfig, device: str | None) -> str | None:
    """The spec's start-up line for LLMLingua; ``device`` is the one the proxy's own model
    server will use (None: it starts none). ``None`` when not installed and not asked for."""
    if not config.llmlingua:
        return "LLMLingua: available (enable with --llmlingua for ML compression)" if llmlingua_installed() else None
    if device is not None:
        return f"LLMLingua: ENABLED (device={device}, rate={config.llmlingua_rate:g})"
    if config.model_server_url:
        return f"LLMLingua: ENABLED (model server {config.model_server_url}, rate={config.llmlingua_rate:g})"
    return f"WARNING: LLMLingua requested but not installed. Install with: {INSTALL_HINT}"


def _fail(message: str) -> int:
    print(f"headroom: error: {message}", file=sys.stderr)
    return 2


def run_proxy(config: ProxyConfig) -> int:
    # The helpers' code is imported only where a helper is started: one worker with the
    # default features starts none, and its start-up is the budget of /health (0.5 s).
    from headroom.observability.metrics import prepare_multiprocess_dir
    from headroom.observability.request_log import RequestLog
    from headroom.pricing import load_pricing

    limit_malloc_arenas()  # first: before any thread of this process allocates (the tokenizer's, the helpers')
    if config.log_file:
        try:
            RequestLog(config.log_file).check()
        except OSError as exc:
            return _fail(f"cannot write --log-file {config.log_file}: {exc}")
    try:
        load_pricing(config.pricing_file)
    except (OSError, ValueError) as exc:
        return _fail(f"--pricing-file {config.pricing_file}: {exc}")
    # Every worker (and the model server) writes its metrics into one shared directory, so
    # /metrics sums them all. Before any child starts: they inherit it.
    prepare_multiprocess_dir()
    children: list = []
    directories: list[Path] = []
    try:
        if early_stop.requested():
            return 0  # stopped while starting: before any helper (headroom.workers.early_stop)
        if config.workers > 1 and config.optimize and start_method() == "fork":
            # The tokenizer the workers will share starts loading now, while this process waits
            # for the helpers it starts (preload_for_workers waits for it before the fork).
            from headroom.transforms import tokens

            tokens.warm_up()
        if config.workers > 1 and not config.redis_url:
            from headroom.workers.redis_server import PrivateRedis, RedisServerFailed, RedisServerMissing

            # Several workers must share limits, cache and stats: give them a private Redis.
            try:
                private = PrivateRedis(maxmemory=config.store_max_bytes)
                children.append(private)
                # A secret of the run's own, not one kept in Redis: a private Redis that dies and
                # is restarted comes back empty, and every worker must keep hashing callers alike.
                config = dataclasses.replace(config, redis_url=private.start(),
                                             state_secret=config.state_secret or secrets.token_hex(32))
            except (RedisServerMissing, RedisServerFailed) as exc:
                return _fail(str(exc))
        own_model_server = config.llmlingua and not config.model_server_url
        device = choose_device(config.llmlingua_device) if own_model_server and llmlingua_installed() else None
        line = llmlingua_line(config, device)
        if own_model_server and device is None:
            config = dataclasses.replace(config, llmlingua=False)  # not installed: serve without it
        elif own_model_server and device is not None and not early_stop.requested():
            from headroom.workers.model_process import start_model_server
            from headroom.workers.redis_server import private_directory
            from headroom.workers.supervisor import ChildFailed

            directory = private_directory("headroom-model-")
            directories.append(directory)
            try:
                child, url = start_model_server(config, directory, device)
            except ChildFailed as exc:
                return _fail(f"the LLMLingua model server did not start: {exc}")
            children.append(child)
            config = dataclasses.replace(config, model_server_url=url)
        if line:
            print(line, file=sys.stderr)
        if not early_stop.requested():
            serve(config)
    finally:
        for child in reversed(children):
            child.stop()
        for directory in directories:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


def worker_app(config: ProxyConfig) -> Sanic:
    """The app of one worker process (Sanic calls this in each, through the loader, on the
    worker's main thread). A worker must not outlive a main process that was killed: it would
    hold the port with nobody left to replace it or stop it (:mod:`headroom.workers.lifetime`)."""
    import multiprocessing

    from headroom.proxy.factory import create_app
    from headroom.workers.lifetime import die_with_parent

    main = multiprocessing.parent_process()
    if main is not None:
        die_with_parent(signal.SIGKILL, main.pid)
        _forget_main_process_app()
    return create_app(config)


def _forget_main_process_app() -> None:
    """A worker forked from the main process inherits its app in Sanic's registry of apps by
    name; the worker's own app takes that name (Sanic finds its server settings by it)."""
    from sanic import Sanic
    from sanic.exceptions import SanicException

    try:
        Sanic.unregister_app(Sanic.get_app("headroom"))
    except SanicException:
        pass  # spawned, not forked: a fresh interpreter has none


def main_process_app(shield: SpawnShield | None = None) -> Sanic:
    """The app object of the main process. Sanic needs one to run its workers, but the main
    process serves no request: it only replaces workers that crash. So it is built without the
    routes and never imports them (or the upstream client, Redis's client, sanic-ext): the workers start
    sooner, and ``/health`` answers sooner after launch.

    ``shield``: the signal block Sanic's manager process was started under (it must survive a
    stop of the whole process group); lifted here, once the manager exists and the watchdog
    handles the stop signals, before the workers are started."""
    from sanic import Sanic

    from headroom.workers.lifetime import bind_to_main_process
    from headroom.workers.watchdog import Watchdog

    app = Sanic("headroom", configure_logging=True)
    app.config.AUTO_EXTEND = False  # sanic-ext is the workers' business
    app.ctx.watchdog = watchdog = Watchdog(app)

    @app.main_process_ready
    async def watch_workers(app: Sanic) -> None:
        bind_to_main_process(app.manager.worker_state)  # never outlives this process
        watchdog.start()
        if shield is not None:
            shield.lift()  # a stop deferred until now goes to the watchdog

    @app.main_process_stop
    async def stop_watching(app: Sanic) -> None:
        watchdog.stop()

    return app


def serve(config: ProxyConfig) -> None:
    for message in startup_warnings(config):
        print(f"headroom: WARNING: {message}", file=sys.stderr)
    print(banner(config), file=sys.stderr, flush=True)
    if config.workers == 1:
        serve_single(config)
    else:
        serve_workers(config)


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """One glibc malloc arena for the process, not one more per thread that allocates.

    Why: the tokenizer is loaded in a thread of its own (:func:`headroom.transforms.tokens.warm_up`);
    glibc gave that thread an arena of its own, and the pages the load's temporary Python
    table left there stayed resident: ~4 MB of a worker's ~100 (measured with o200k_base).
    The event loop runs in one thread, so nothing contends for the arena. Same effect as
    ``MALLOC_ARENA_MAX=1``; False where the C library is not glibc (nothing changes)."""
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6").mallopt(-8, arenas) == 1  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def serve_single(config: ProxyConfig) -> None:
    """One worker: the main process serves, with no process of Sanic's beside it.

    Why: Sanic's multi-process mode runs, for one worker, four processes (the main process,
    its shared-state manager, multiprocessing's resource tracker, the worker): ~180 MB of RSS
    where the worker alone is ~100, and a second interpreter to start before ``/health``
    answers. What is given up is the watchdog's restart of a crashed worker: here a crash
    ends the proxy, with a non-zero exit code, and whatever started it restarts it (systemd's
    ``Restart=on-failure``, Kubernetes, ``headroom wrap``), as with any single-process server.
    ``--workers 2`` or more keeps the watchdog. The helpers (private Redis, model server) die
    with this process as before (:mod:`headroom.workers.supervisor`).
    """
    from sanic import Sanic

    from headroom.proxy.protocol import DeadlineHttpProtocol

    app = worker_app(config)
    app.prepare(host=config.host, port=config.port, access_log=False, motd=False, verbosity=0,
                protocol=DeadlineHttpProtocol, single_process=True)
    if early_stop.requested():
        return  # after that, the worker's start-up watch sees it (honour_a_stop_sent_while_starting)
    Sanic.serve_single(app)


def start_method() -> str:
    """How the workers are started: "fork" (the default: :func:`preload_for_workers`), or
    "spawn" with ``HEADROOM_WORKER_START=spawn``: a fresh interpreter per worker, as before,
    for a platform or a library that is not safe to fork (and for the tests that freeze a
    worker in the middle of its start, which a forked worker is through in milliseconds)."""
    import os

    return "spawn" if os.environ.get("HEADROOM_WORKER_START", "").strip().lower() == "spawn" else "fork"


def preload_for_workers(config: ProxyConfig) -> None:
    """Import the workers' code and load the tokenizer once, in the main process, before
    the workers are forked from it.

    Why: with multiprocessing's "spawn" every worker was a fresh interpreter that imported the
    app (~0.3 s of CPU each, all at once on a small machine) and loaded tiktoken's o200k tables
    (~48 MB each, ~0.3 s). Forked, the workers start with both in place, and the tables,
    which live in the Rust tokenizer's memory that no Python reference count touches, stay
    shared copy-on-write by every worker: counted once in the processes' PSS, not per worker.

    Blocks for the tokenizer's load (bounded by :data:`headroom.transforms.tokens.LOAD_TIMEOUT_S`
    when the encoding must be downloaded and the network hangs): the workers then count
    exactly, or with estimates, from their first request, and the "not available" warning is
    said once, here, not once per worker.
    """
    import_worker_modules(config)
    if config.optimize:
        from headroom.transforms import tokens

        tokens.warm_up().join()


def import_worker_modules(config: ProxyConfig) -> None:
    """Import what every worker imports before it serves: the app and its routes (sanic,
    the upstream client, the formats and transforms), Prometheus's client (imported on first use), and
    Redis's client when the workers share a Redis (imported only then).

    Why here: a worker forked after this finds them in place; before, each of 4 workers
    imported them itself, ~0.3 s of CPU each on a 2-core machine, between the fork and its
    first ``/health`` (``headroom.proxy.server``, imported here before, builds its app lazily
    and so imported nothing). Measured by ``load_tests/footprint.py``."""
    import prometheus_client  # noqa: F401 - headroom.observability.metrics imports it on first use

    import headroom.proxy.factory  # the app, its routes and what they import

    if config.redis_url:
        import headroom.state.redis_store  # noqa: F401 - headroom.proxy.resources.open_store, with a Redis


def serve_workers(config: ProxyConfig) -> None:
    """Several workers: Sanic's main process, its manager, and the workers it starts,
    forked from a main process that has loaded what they share (:func:`preload_for_workers`)."""
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from headroom.workers.lifetime import SpawnShield

    if start_method() == "fork":
        preload_for_workers(config)
        Sanic.start_method = "fork"
    if early_stop.requested():
        return  # after that, the watchdog sees it (Watchdog.start)
    loader = AppLoader(factory=partial(worker_app, config))
    shield = SpawnShield()
    app = main_process_app(shield)
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = config.shutdown_grace  # the watchdog bounds a stop by it
    from headroom.proxy.protocol import DeadlineHttpProtocol

    app.prepare(
        host=config.host, port=config.port, workers=config.workers, access_log=False, motd=False, verbosity=0,
        protocol=DeadlineHttpProtocol,
    )
    with shield:  # Sanic's manager process is started in there, before anything of ours runs
        Sanic.serve(primary=app, app_loader=loader)
    if not app.ctx.watchdog.wait_for_workers(config.shutdown_grace + 5):
        print("headroom: WARNING: a worker was still running after --shutdown-grace", file=sys.stderr)

