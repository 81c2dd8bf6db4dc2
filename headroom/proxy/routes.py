"""The proxy's routes: LLM calls and passthrough.

One LLM request's path, in :func:`llm_request`: parse the body once → identify the caller
(a keyed hash of the API key) → response cache (a hit is replayed and we are done) →
rate limits and budget (one atomic store call) → compression (see ``compression``) →
upstream (see ``forward``) → the books are closed once the answer is out (see ``bookkeeping``).
Everything else under ``/v1`` passes through untouched. What the steps learn about the
request travels in its :class:`~headroom.proxy.exchange.Exchange`.
"""

from __future__ import annotations

import asyncio

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from headroom.proxy import response_cache
from headroom.proxy.body import api_key_of, dumps, json_object, request_body
from headroom.proxy.bookkeeping import schedule
from headroom.proxy.compression import compress_request
from headroom.proxy.context import context_of
from headroom.proxy.errors import ProxyError, error_response
from headroom.proxy.exchange import Exchange
from headroom.proxy.forward import forward, replay
from headroom.proxy.guards import Refused, enforce, guard_request, store_down
from headroom.proxy.providers import ANTHROPIC, OPENAI, Provider, provider_for_path
from headroom.proxy.request_id import request_id_for
from headroom.proxy.usage import ask_for_stream_usage
from headroom.state.identity import caller_hash
from headroom.state.store import StoreUnavailable

bp = Blueprint("proxy")

_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


async def proxy_request(request: Request, provider: Provider, path: str, *, llm_call: bool) -> HTTPResponse | None:
    exchange = Exchange(request_id_for(request), provider, path, len(request.body or b""))
    response: HTTPResponse | None = None
    try:
        body = request_body(request)
        if llm_call:
            response = await llm_request(request, provider, path, body, exchange)
        else:
            response = await forward(request, provider, path, body, exchange)
    except ProxyError as exc:
        exchange.fail(exc.status, f"http_{exc.status}")
        response = error_response(provider, exc.status, exc.message, exc.code, exchange.request_id)
        response.headers.update(exchange.headroom_headers())
        if isinstance(exc, Refused):
            exchange.limited = exc.limit
            response.headers.update(exc.headers)
    except asyncio.CancelledError:
        exchange.fail(499, "client_disconnected")  # the client closed the connection
        raise
    finally:
        schedule(context_of(request), exchange)
    return response


async def llm_request(
    request: Request, provider: Provider, path: str, body: bytes, exchange: Exchange
) -> HTTPResponse | None:
    context = context_of(request)
    config, store = context.config, context.store
    parsed = json_object(body)
    exchange.model = parsed.get("model") if isinstance(parsed.get("model"), str) else None
    exchange.stream = parsed.get("stream") is True
    if config.log_messages:
        exchange.messages = parsed.get("messages")
    exchange.caller = caller_hash(context.secret, api_key_of(request))

    policy = response_cache.policy(config.cache, request.headers.get("cache-control", ""))
    if policy.store:
        exchange.cache_key = response_cache.request_key(path, parsed)
        exchange.cache = policy.label
    lookup = (exchange.caller, exchange.cache_key) if policy.lookup else None
    guard = guard_request(config, context.pricing, exchange.caller, parsed, len(body))
    if lookup or guard:
        try:
            admission = await store.admit(lookup, guard)  # one round trip for both
        except StoreUnavailable:
            store_down(config, guarded=guard is not None)
        else:
            exchange.guard = admission.guard
            if admission.cached is not None:
                exchange.cache = "hit"
                exchange.cache_key = None  # nothing new to store
                return await replay(request, response_cache.CachedAnswer.decode(admission.cached), exchange)
            if admission.guard is not None:
                enforce(config, provider, admission.guard)

    compressed = await compress_request(context, provider, parsed, exchange)
    if compressed is not None:
        parsed, body = compressed, dumps(compressed)
    if provider is OPENAI and ask_for_stream_usage(parsed):
        body = dumps(parsed)
        exchange.strip_usage_chunk = True
    return await forward(request, provider, path, body, exchange)


@bp.post("/v1/messages")
async def anthropic_messages(request: Request):
    return await proxy_request(request, ANTHROPIC, "/v1/messages", llm_call=True)


@bp.post("/v1/chat/completions")
async def openai_chat(request: Request):
    return await proxy_request(request, OPENAI, "/v1/chat/completions", llm_call=True)


@bp.post("/chat/completions", name="openai_chat_unversioned")
async def openai_chat_unversioned(request: Request):
    """Some OpenAI-compatible clients are configured with a base URL that lacks ``/v1``."""
    return await proxy_request(request, OPENAI, "/v1/chat/completions", llm_call=True)


@bp.route("/v1/<rest:path>", methods=_ALL_METHODS, name="passthrough")
async def passthrough(request: Request, rest: str):
    """Every other API path (count_tokens, models, files, batches …) goes through untouched."""
    provider = provider_for_path(request.path, request.headers)
    return await proxy_request(request, provider, f"/v1/{rest}", llm_call=False)
