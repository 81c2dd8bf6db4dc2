"""What every route of one worker shares, typed: opened at start and closed at stop.

Sanic's ``app.ctx`` is an untyped bag; Headroom keeps exactly one thing in it, a
:class:`WorkerResources`, and every module reads it through :func:`resources_of`. Each worker
opens its own (a store connection and an upstream pool cannot cross a fork).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sanic import Request, Sanic

from headroom.config import ProxyConfig
from headroom.observability.request_log import RequestLog
from headroom.pricing import Pricing, load_pricing
from headroom.proxy.inflight import InFlightBytes
from headroom.proxy.open_books import OpenBooks
from headroom.proxy.stats import StatsBuffer
from headroom.proxy.upstream import Upstream
from headroom.proxy.write_behind import WriteBehind
from headroom.state.identity import new_secret, secret_from_text
from headroom.state.memory_store import MemoryStore
from headroom.state.store import Store, StoreUnavailable
from headroom.state.tool_use import BackoffRule
from headroom.transforms import PipelineOptions
from headroom.transforms.prose_model import ProseSettings
from headroom.workers.model_client import ModelClient

log = logging.getLogger("headroom.proxy")


@dataclass
class WorkerResources:
    config: ProxyConfig
    pricing: Pricing
    store: Store
    secret: bytes  # the key for hashing API keys (see headroom.state.identity)
    upstream: Upstream
    pipeline_options: PipelineOptions
    stats_buffer: StatsBuffer  # this worker's statistics not yet in the store
    writes: WriteBehind  # settlements and cache puts waiting for one batched store call
    request_log: RequestLog | None
    model: ModelClient | None  # the LLMLingua model server (--llmlingua)
    inflight: InFlightBytes  # request bytes this worker holds (--max-inflight-mb)
    draining: bool = False  # set when the worker begins to stop: /readyz answers 503 from then on
    open_books: OpenBooks = field(default_factory=OpenBooks)  # answered, books not yet closed (bookkeeping)


def resources_of(target: Request | Sanic) -> WorkerResources:
    app = target.app if isinstance(target, Request) else target
    return app.ctx.headroom


async def open_store(config: ProxyConfig) -> Store:
    """Redis with ``--redis-url`` (reached once here, to warn at start when it is not: the
    worker serves unguarded until it is back), otherwise this worker's memory."""
    if not config.redis_url:
        return MemoryStore(cache_ttl=config.cache_ttl, cache_max_entries=config.cache_max_entries,
                           max_bytes=config.store_max_bytes)
    from headroom.state.redis_store import RedisStore  # only then: Redis's client takes 0.2 s to import

    store = RedisStore(config.redis_url, cache_ttl=config.cache_ttl, cache_max_entries=config.cache_max_entries,
                       socket_timeout=config.redis_timeout, connect_timeout=config.redis_timeout)
    try:
        await store.connect()
    except StoreUnavailable:
        log.warning("Redis unreachable at start: serving unguarded until it is back")
    return store


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


async def open_resources(config: ProxyConfig) -> WorkerResources:
    if config.llmlingua and not config.model_server_url:
        # `headroom proxy` starts its own model server; an ASGI server (gunicorn, uvicorn) cannot.
        log.warning("LLMLingua is on but no model server is configured: prose goes uncompressed. Run "
                    "`headroom model-server` and set HEADROOM_MODEL_SERVER_URL")
    store = await open_store(config)
    upstream = Upstream(config)
    await upstream.start()
    return WorkerResources(
        config=config,
        pricing=load_pricing(config.pricing_file),
        store=store,
        secret=await deployment_secret(config, store),
        upstream=upstream,
        pipeline_options=PipelineOptions(
            ccr_ttl=config.ccr_ttl,
            backoff=BackoffRule(threshold=config.retrieval_backoff, counts_ttl_s=config.ccr_ttl),
            prose=ProseSettings(rate=config.llmlingua_rate, timeout_s=config.llmlingua_timeout_ms / 1000),
        ),
        stats_buffer=StatsBuffer(),
        writes=WriteBehind(store),
        request_log=RequestLog(config.log_file, config.log_messages) if config.log_file else None,
        model=(ModelClient(config.model_server_url, config.model_server_token)
               if config.llmlingua and config.model_server_url else None),
        inflight=InFlightBytes(config.max_inflight_bytes),
    )


async def close_resources(resources: WorkerResources) -> None:
    await resources.upstream.close()
    await resources.store.close()
    if resources.model is not None:
        await resources.model.close()
    if resources.request_log is not None:
        resources.request_log.close()
