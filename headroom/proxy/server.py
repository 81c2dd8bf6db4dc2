"""The Sanic application.

``create_app(config)`` builds one app; every worker process builds its own from the same
config. ``headroom.proxy.server:app`` is an app configured from the environment, for ASGI
servers (``uvicorn headroom.proxy.server:app``).
"""

from __future__ import annotations

import asyncio
import logging

from sanic import Sanic

from headroom.config import ProxyConfig, build_config
from headroom.observability import metrics
from headroom.observability.request_log import RequestLog
from headroom.pricing import load_pricing
from headroom.proxy import admin, compression_api, routes
from headroom.proxy.errors import handle_exception
from headroom.proxy.openapi import add_openapi
from headroom.proxy.optimize import pipeline_options
from headroom.proxy.settle import WriteBehind, flush_stats, flush_stats_forever
from headroom.proxy.stats import StatsBuffer
from headroom.proxy.upstream import Upstream
from headroom.state.identity import new_secret, secret_from_text
from headroom.state.redis_store import RedisStore
from headroom.state.store import MemoryStore, Store, StoreUnavailable
from headroom.transforms import tokens
from headroom.workers.watchdog import Watchdog

log = logging.getLogger("headroom.proxy")

# Sanic's own timeout on a handler must never cut a long answer short: upstream silence is
# bounded by --request-timeout instead, which resets with every chunk of a stream.
_HANDLER_TIMEOUT_S = 24 * 3600


def make_store(config: ProxyConfig) -> Store:
    if config.redis_url:
        return RedisStore(config.redis_url, cache_ttl=config.cache_ttl, cache_max_entries=config.cache_max_entries,
                          socket_timeout=config.redis_timeout, connect_timeout=config.redis_timeout)
    return MemoryStore(cache_ttl=config.cache_ttl, cache_max_entries=config.cache_max_entries)


async def deployment_secret(config: ProxyConfig, store: Store) -> bytes:
    """The key for hashing API keys: configured, or shared through the store."""
    if config.state_secret:
        return secret_from_text(config.state_secret)
    try:
        return await store.shared_secret()
    except StoreUnavailable:
        log.warning("shared store unreachable at start: this worker hashes callers with its own secret "
                    "until restarted (set --state-secret to avoid this)")
        return new_secret()


def create_app(config: ProxyConfig | None = None) -> Sanic:
    config = config or build_config()
    app = Sanic("headroom", configure_logging=True)
    app.config.REQUEST_MAX_SIZE = config.max_body_bytes
    app.config.RESPONSE_TIMEOUT = _HANDLER_TIMEOUT_S
    app.config.NOISY_EXCEPTIONS = False
    app.config.AUTO_EXTEND = False  # sanic-ext only where asked for (OpenAPI), never on the hot path
    app.ctx.config = config
    app.ctx.pricing = load_pricing(config.pricing_file)
    app.ctx.request_log = RequestLog(config.log_file, config.log_messages) if config.log_file else None
    app.ctx.stats = StatsBuffer()
    app.ctx.writes = WriteBehind(app)
    app.ctx.pipeline_options = pipeline_options(config)
    app.blueprint(admin.bp)
    app.blueprint(compression_api.bp)
    app.blueprint(routes.bp)
    add_openapi(app, routes.bp)
    app.error_handler.add(Exception, handle_exception)

    @app.before_server_start
    async def open_resources(app: Sanic) -> None:
        metrics.get_metrics()  # series exist (at 0) from the first scrape
        app.ctx.store = make_store(config)
        if isinstance(app.ctx.store, RedisStore):
            try:
                await app.ctx.store.connect()
            except StoreUnavailable:
                log.warning("Redis unreachable at start: serving unguarded until it is back")
        app.ctx.secret = await deployment_secret(config, app.ctx.store)
        app.ctx.upstream = Upstream(config)
        await app.ctx.upstream.start()

    @app.after_server_start
    async def start_flushing(app: Sanic) -> None:
        app.ctx.flusher = asyncio.get_running_loop().create_task(flush_stats_forever(app))

    @app.after_server_start
    async def load_tokenizer(app: Sanic) -> None:
        # In the background: /health answers at once, and the first request rarely waits.
        if config.optimize:
            tokens.warm_up()  # loads in a thread of its own

    @app.main_process_ready
    async def watch_workers(app: Sanic) -> None:
        """Main process only: replace workers that crash."""
        app.ctx.watchdog = Watchdog(app)
        app.ctx.watchdog.start()

    @app.main_process_stop
    async def stop_watching(app: Sanic) -> None:
        if getattr(app.ctx, "watchdog", None):
            app.ctx.watchdog.stop()

    @app.before_server_stop
    async def drain_settling(app: Sanic) -> None:
        await app.ctx.writes.drain()
        app.ctx.flusher.cancel()
        await flush_stats(app)

    @app.after_server_stop
    async def close_resources(app: Sanic) -> None:
        await app.ctx.upstream.close()
        await app.ctx.store.close()
        if app.ctx.request_log is not None:
            app.ctx.request_log.close()

    return app


def __getattr__(name: str):
    # Built on first access, not at import: the CLI builds its own app from its flags.
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(name)
