"""The proxy's routes: LLM calls and passthrough.

One LLM request's path, in :func:`llm_request`: parse the body once → identify the caller
(a keyed hash of the API key) → response cache (a hit is replayed and we are done) →
rate limits and budget (one atomic store call) → compression (see ``compression``) →
upstream (see ``forward``) → the books are closed once the answer is out (see ``bookkeeping``).
Everything else under ``/v1``, and every method but POST on the LLM routes' paths, passes
through untouched. What the steps learn about the request travels in its
:class:`~headroom.proxy.exchange.Exchange`.
"""

from __future__ import annotations

import asyncio
import re
from functools import partial
from urllib.parse import unquote

from sanic import Blueprint, Request
from sanic.exceptions import BadURL
from sanic.response import HTTPResponse

from headroom.proxy import response_cache
from headroom.proxy.body import dumps, json_object, request_body
from headroom.proxy.bookkeeping import schedule
from headroom.proxy.compression import compress_request
from headroom.proxy.context import context_of
from headroom.proxy.errors import ProxyError, error_response
from headroom.proxy.exchange import Exchange
from headroom.proxy.forward import forward, replay
from headroom.proxy.guards import Refused, enforce, guard_request, store_down
from headroom.proxy.providers import ANTHROPIC, OPENAI, RESPONSES_FORMAT, Provider, provider_for_path, wire_format
from headroom.proxy.request_id import request_id_for
from headroom.proxy.usage import ask_for_stream_usage
from headroom.state.identity import MalformedCredential, caller_hash, credential_of
from headroom.state.store import StoreUnavailable

bp = Blueprint("proxy")

_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


async def proxy_request(request: Request, provider: Provider, path: str, *, llm_call: bool) -> HTTPResponse | None:
    exchange = Exchange(request_id_for(request), provider, path, len(request.body or b""))
    response: HTTPResponse | None = None
    held = 0
    try:
        held = context_of(request).inflight.hold(exchange.bytes_in)
        body = request_body(request)
        credential = caller_credential(request)
        if llm_call:
            response = await llm_request(request, provider, path, body, credential, exchange)
        else:
            if leaves_its_prefix(path):
                raise ProxyError(400, "Request path contains a '.' or '..' segment (possibly percent-encoded)")
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
        context_of(request).inflight.release(held)
        schedule(context_of(request), exchange)
    return response


def caller_credential(request: Request) -> bytes:
    """The caller's credential (:func:`~headroom.state.identity.credential_of`); a native 400
    when it could not be forwarded as received."""
    try:
        return credential_of(request.headers)
    except MalformedCredential as exc:
        raise ProxyError(400, f"{exc}: send the API key as it is") from None


async def llm_request(
    request: Request, provider: Provider, path: str, body: bytes, credential: bytes, exchange: Exchange
) -> HTTPResponse | None:
    context = context_of(request)
    config, store = context.config, context.store
    parsed = json_object(body)
    exchange.model = parsed.get("model") if isinstance(parsed.get("model"), str) else None
    exchange.stream = parsed.get("stream") is True
    exchange.wire = wire_format(provider, path)
    if config.log_messages:
        exchange.messages = parsed.get("input" if exchange.wire == RESPONSES_FORMAT else "messages")
    exchange.caller = caller_hash(context.secret, credential)

    policy = response_cache.policy(config.cache, request.headers.get("cache-control", ""))
    if policy.store and not credential:
        # Anonymous: Headroom cannot tell such callers apart (they may authenticate upstream
        # by other means), so none of them is ever served another's answer.
        exchange.cache = "bypass"
    elif policy.store:
        # The query is part of the request (``?beta=true`` changes the answer).
        query = request.query_string
        exchange.cache_key = response_cache.request_key(f"{path}?{query}" if query else path, parsed)
        exchange.cache = policy.label
    lookup = (exchange.caller, exchange.cache_key) if policy.lookup and exchange.cache_key else None
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
    if exchange.wire == "openai" and ask_for_stream_usage(parsed):  # Responses streams always report it
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


@bp.post("/v1/responses")
async def openai_responses(request: Request):
    return await proxy_request(request, OPENAI, "/v1/responses", llm_call=True)


@bp.post("/responses", name="openai_responses_unversioned")
async def openai_responses_unversioned(request: Request):
    """The Responses API for clients configured without ``/v1`` (``/responses/{id}`` …
    pass through below)."""
    return await proxy_request(request, OPENAI, "/v1/responses", llm_call=True)


#: The LLM routes above handle POST; every other method on their paths is the provider's
#: own API and passes through untouched (``GET /v1/chat/completions`` lists stored chat
#: completions, ``client.chat.completions.list()``). Path as received → path upstream.
_LLM_PATHS = {
    "/v1/messages": "/v1/messages",
    "/v1/chat/completions": "/v1/chat/completions",
    "/chat/completions": "/v1/chat/completions",
    "/v1/responses": "/v1/responses",
    "/responses": "/v1/responses",
}
_NOT_POST = [method for method in _ALL_METHODS if method != "POST"]


async def llm_path_other_method(request: Request, upstream_path: str):
    """Any method but POST on an LLM route's path goes to the upstream like every pass-through.

    One exception: the Responses API over a WebSocket (``GET /v1/responses`` with
    ``Upgrade: websocket``) is refused with a 426, so that clients use HTTP. Codex with
    OpenAI's built-in provider asks for it first. On a 426 it switches to HTTP at once
    (measured with Codex CLI 0.171: one attempt); on a 405 it retries five times, about 6 s,
    before it does; a 400 fails its turn. Over HTTP every request gets what this proxy is
    for: compression, the cache, limits, budget and usage. A relayed socket would carry each
    turn as frames that this pipeline would have to parse anew, for no saving the HTTP path
    does not give."""
    upgrade = request.headers.get("upgrade", "").lower()
    if upstream_path == "/v1/responses" and request.method == "GET" and "websocket" in upgrade:
        raise ProxyError(426, "Headroom serves the Responses API over HTTP: use POST /v1/responses "
                              "(WebSocket transport is not supported)", "websocket_not_supported")
    provider = provider_for_path(upstream_path, request.headers)
    return await proxy_request(request, provider, upstream_path, llm_call=False)


for _path, _upstream_path in _LLM_PATHS.items():
    bp.add_route(partial(llm_path_other_method, upstream_path=_upstream_path), _path, methods=_NOT_POST,
                 name="other_methods" + _path.replace("/", "_"))


@bp.route("/chat/completions/<rest:path>", methods=_ALL_METHODS, name="openai_chat_unversioned_passthrough")
@bp.route("/responses/<rest:path>", methods=_ALL_METHODS, name="openai_responses_unversioned_passthrough")
async def unversioned_passthrough(request: Request, rest: str):
    """``/responses/{id}``, ``/chat/completions/{id}`` … for clients configured without ``/v1``."""
    prefix = "/v1/chat/completions" if request.path.startswith("/chat/") else "/v1/responses"
    return await proxy_request(request, OPENAI, f"{prefix}/{rest}", llm_call=False)


@bp.route("/v1/<rest:path>", methods=_ALL_METHODS, name="passthrough")
async def passthrough(request: Request, rest: str):
    """Every other API path (count_tokens, models, files, batches …) goes through untouched."""
    provider = provider_for_path(request.path, request.headers)
    return await proxy_request(request, provider, f"/v1/{rest}", llm_call=False)


# A "." or ".." segment, with "/" or "\\" as separators (URL parsers treat both alike).
_DOT_SEGMENT = re.compile(r"(?:^|[/\\])\.\.?(?:[/\\]|$)")
_MAX_DECODES = 3


def leaves_its_prefix(path: str) -> bool:
    """Whether a pass-through path could climb out of ``/v1/`` on the upstream: a dot
    segment, as sent or once decoded (``%2e%2e``, ``..%2f``, ``%252e%252e`` …). The HTTP
    client normalises dot segments before sending (``/v1/../admin`` would go out as
    ``/admin``), and upstreams and gateways decode the path too, so every reading that
    contains one is refused; real API paths never do. The host itself is never in question:
    the upstream URL is always the configured base followed by ``/v1/``."""
    for _ in range(_MAX_DECODES + 1):
        if _DOT_SEGMENT.search(path):
            return True
        decoded = unquote(path)
        if decoded == path:
            return False
        path = decoded
    return True  # encoded more times than any client would: refuse rather than guess


class ProxyRequest(Request):
    """Sanic's request, except that the stand-in request Sanic builds to answer a request
    whose head it could not parse survives a request target it cannot parse either.

    A request line like ``GET host:port/path`` (authority form) or ``CONNECT host:443``
    makes Sanic's stand-in raise again while it prepares the error answer: the connection
    was dropped without a word and a traceback logged for every such request. With a
    neutral target for the stand-in only, the client gets a native 400 instead."""

    def __init__(self, url_bytes: bytes, *args, **kwargs) -> None:
        try:
            super().__init__(url_bytes, *args, **kwargs)
        except BadURL:
            if kwargs.get("method") != "NONE":  # a real request: Sanic answers it with a 400
                raise
            super().__init__(b"*", *args, **kwargs)
