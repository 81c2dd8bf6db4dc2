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
    from headroom.observability.metrics import prepare_multiprocess_dir
    from headroom.observability.request_log import RequestLog
    from headroom.pricing import load_pricing
    from headroom.workers.model_process import start_model_server
    from headroom.workers.redis_server import PrivateRedis, RedisServerFailed, RedisServerMissing, private_directory
    from headroom.workers.supervisor import ChildFailed

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
        if config.workers > 1 and not config.redis_url:
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
        elif own_model_server and device is not None:
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
    return create_app(config)


def main_process_app(shield: SpawnShield | None = None) -> Sanic:
    """The app object of the main process. Sanic needs one to run its workers, but the main
    process serves no request: it only replaces workers that crash. So it is built without the
    routes and never imports them (or aiohttp, Redis's client, sanic-ext): the workers start
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
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from headroom.workers.lifetime import SpawnShield

    for message in startup_warnings(config):
        print(f"headroom: WARNING: {message}", file=sys.stderr)
    print(banner(config), file=sys.stderr, flush=True)
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

