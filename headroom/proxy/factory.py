"""The Sanic application factory.

``create_app(config)`` builds one app; every worker process builds its own from the same
config and opens its own :class:`~headroom.proxy.resources.WorkerResources` (store connection,
upstream pool). ``headroom proxy`` calls it with the config from its flags; ASGI servers load
``headroom.proxy.server:app`` instead (see :mod:`headroom.proxy.server`).
"""

from __future__ import annotations

import asyncio

from sanic import Sanic

from headroom.config import ProxyConfig, build_config
from headroom.observability import metrics
from headroom.proxy import admin, compression_api, dashboard, heap, openapi, routes
from headroom.proxy.bookkeeping import close_books, flush_stats, flush_stats_forever
from headroom.proxy.errors import handle_exception
from headroom.proxy.resources import close_resources, open_resources, resources_of
from headroom.transforms import tokens
from headroom.workers.watchdog import WorkerApp, honour_a_stop_sent_while_starting

# Sanic's own timeout on a handler must never cut a long answer short: upstream silence is
# bounded by --request-timeout instead, which resets with every chunk of a stream.
_HANDLER_TIMEOUT_S = 24 * 3600


def create_app(config: ProxyConfig | None = None) -> Sanic:
    config = config or build_config()
    app = WorkerApp("headroom", configure_logging=True, request_class=routes.ProxyRequest)
    app.config.REQUEST_MAX_SIZE = config.max_body_bytes
    app.config.RESPONSE_TIMEOUT = _HANDLER_TIMEOUT_S
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = config.shutdown_grace
    # Slow clients cannot hold a worker: the whole request within --client-timeout (also the
    # limit for a connection that never sends one), idle keep-alive connections closed.
    # Sanic's Config annotates these int; it passes them to loop.call_later, seconds as floats.
    app.config.REQUEST_TIMEOUT = config.client_timeout  # type: ignore[assignment]
    app.config.KEEP_ALIVE_TIMEOUT = config.keep_alive_timeout  # type: ignore[assignment]
    app.config.HEADROOM_MAX_CONNECTIONS = config.max_connections  # read by headroom.proxy.protocol
    app.config.NOISY_EXCEPTIONS = False
    app.config.AUTO_EXTEND = False  # sanic-ext builds the OpenAPI file; a worker never loads it
    app.blueprint(admin.bp)
    app.blueprint(dashboard.bp)
    app.blueprint(compression_api.bp)
    app.blueprint(routes.bp)
    app.blueprint(openapi.bp)  # a file built by sanic-ext: see headroom.proxy.openapi_build
    app.error_handler.add(Exception, handle_exception)
    background: list[asyncio.Task] = []  # this worker's stats flusher

    @app.before_server_start
    async def open_worker(app: Sanic) -> None:
        metrics.get_metrics()  # series exist (at 0) from the first scrape
        app.ctx.headroom = await open_resources(config)

    @app.after_server_start
    async def start_background_work(app: Sanic) -> None:
        # First: from here on a stop signal is only noted until the worker serves.
        background.append(asyncio.get_running_loop().create_task(honour_a_stop_sent_while_starting(app)))
        heap.settle()  # start-up objects out of the collector's way (see headroom.proxy.heap)
        asyncio.get_running_loop().call_soon(resources_of(app).upstream.prepare)  # once serving
        background.append(asyncio.get_running_loop().create_task(flush_stats_forever(resources_of(app))))
        if config.optimize:
            # In the background: /health answers at once, and no request waits for it (until it
            # is loaded, counts are estimates: headroom.transforms.tokens.count_tokens).
            tokens.warm_up()  # loads in a thread of its own

    @app.before_server_stop
    async def start_draining(app: Sanic) -> None:
        resources_of(app).draining = True

    @app.after_server_stop
    async def close_worker(app: Sanic) -> None:
        """After the last in-flight request and stream has finished (or --shutdown-grace ran
        out): write what is queued, flush this worker's statistics, then close."""
        resources = resources_of(app)
        close_books(resources)  # any still open (they close in the next turn of the loop)
        await resources.writes.drain()
        for task in background:
            task.cancel()
        await flush_stats(resources)
        await close_resources(resources)

    return app

