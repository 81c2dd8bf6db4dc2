"""The proxy's routes: LLM calls and passthrough.

One LLM request's path, in :func:`llm_request`: parse the body once (its format, looked up
once from the route, reads the model and the stream flag) → identify the caller
(a keyed hash of the API key) → response cache (a hit is replayed and we are done) →
rate limits and budget (one atomic store call) → the retrieval tool declared, and turns the
client got spliced put back as the upstream saw them (see ``tool_loop``) → compression (see
``compression``) → upstream (see ``forward``) → the books are closed once the answer is out (see ``bookkeeping``).
Everything else under ``/v1`` (and a format's own prefixes), and every method but POST on
the LLM routes' paths, passes through untouched. The routes come from the formats
(:mod:`headroom.formats`), so this module never names one. What the steps learn about the
request travels in its :class:`~headroom.proxy.exchange.Exchange`.
"""

from __future__ import annotations

import asyncio
import re
from functools import partial
from urllib.parse import unquote

from sanic import Blueprint, Request
from sanic.exceptions import BadURL
from sanic.response import HTTPResponse

from headroom.formats import CREDENTIAL_HEADERS, FORMATS, Format, format_for_path
from headroom.proxy import response_cache
from headroom.proxy.body import dumps, json_object, request_body
from headroom.proxy.bookkeeping import schedule
from headroom.proxy.compression import compress_request
from headroom.proxy.errors import ProxyError, error_response
from headroom.proxy.exchange import Exchange
from headroom.proxy.forward import forward, replay
from headroom.proxy.guards import Refused, enforce, guard_request, store_down
from headroom.proxy.request_id import request_id_for
from headroom.proxy.resources import resources_of
from headroom.proxy.tool_loop import restore_turns, tool_loop_of
from headroom.state.identity import MalformedCredential, caller_hash, credential_of
from headroom.state.store import StoreUnavailable

bp = Blueprint("proxy")

_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


async def proxy_request(request: Request, fmt: Format, path: str, *, llm_call: bool) -> HTTPResponse | None:
    exchange = Exchange(request_id_for(request), fmt, path, len(request.body or b""))
    response: HTTPResponse | None = None
    held = 0
    try:
        held = resources_of(request).inflight.hold(exchange.bytes_in)
        body = request_body(request)
        credential = caller_credential(request, fmt)
        if llm_call:
            response = await llm_request(request, path, body, credential, exchange)
        else:
            if leaves_its_prefix(path):
                raise ProxyError(400, "Request path contains a '.' or '..' segment (possibly percent-encoded)")
            response = await forward(request, fmt, path, body, exchange)
    except ProxyError as exc:
        exchange.fail(exc.status, f"http_{exc.status}")
        response = error_response(fmt, exc.status, exc.message, exc.code, exchange.request_id)
        response.headers.update(exchange.headroom_headers())
        if isinstance(exc, Refused):
            exchange.limited = exc.limit
            response.headers.update(exc.headers)
    except asyncio.CancelledError:
        exchange.fail(499, "client_disconnected")  # the client closed the connection
        raise
    finally:
        resources_of(request).inflight.release(held)
        schedule(resources_of(request), exchange)
    return response


def caller_credential(request: Request, fmt: Format) -> bytes:
    """The caller's credential (:func:`~headroom.state.identity.credential_of`: every
    format's credential headers, and any the format takes from the query); a native 400
    when it could not be forwarded as received."""
    try:
        return credential_of(request.headers, CREDENTIAL_HEADERS, fmt.query_credentials(request.args))
    except MalformedCredential as exc:
        raise ProxyError(400, f"{exc}: send the API key as it is") from None


async def llm_request(
    request: Request, path: str, body: bytes, credential: bytes, exchange: Exchange
) -> HTTPResponse | None:
    resources = resources_of(request)
    config, store, fmt = resources.config, resources.store, exchange.format
    parsed = json_object(body)
    exchange.llm = True
    exchange.model, exchange.stream = fmt.model_and_stream(parsed, path, request.args)
    if config.log_messages:
        exchange.messages = fmt.logged_messages(parsed)
    exchange.caller = caller = caller_hash(resources.secret, credential)

    policy = response_cache.policy(config.cache, request.headers.get("cache-control", ""))
    if policy.store and not credential:
        # Anonymous: Headroom cannot tell such callers apart (they may authenticate upstream
        # by other means), so none of them is ever served another's answer.
        exchange.cache = "bypass"
    elif policy.store:
        # The query is part of the request (``?beta=true`` changes the answer).
        query = fmt.cache_query(request.args, request.query_string)
        exchange.cache_key = response_cache.request_key(f"{path}?{query}" if query else path, parsed)
        exchange.cache = policy.label
    lookup = (exchange.caller, exchange.cache_key) if policy.lookup and exchange.cache_key else None
    guard = guard_request(config, resources.pricing, exchange.caller, parsed, len(body), fmt, exchange.model or "")
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
                enforce(config, fmt, admission.guard)

    # The retrieval tool (tool_loop): declared on every request that carries tools (where the
    # loop can read the answer the route gives), and the turns the client got spliced put
    # back as the upstream saw them, before compression. Never for anonymous callers: they all
    # share one partition, so none may read another's originals (as /v1/retrieve refuses
    # them) or conversation.
    loop = tool_loop_of(config, fmt) if credential else None
    looped = False
    if loop is not None and loop.declare(parsed, path, request.args):
        looped = True
        await restore_turns(store, caller, loop, parsed)
        body = dumps(parsed)
    compressed = await compress_request(resources, parsed, exchange)
    if compressed is not None:
        parsed, body = compressed, dumps(compressed)
    if fmt.prepare(parsed):  # e.g. ask a Chat Completions stream for its usage
        body = dumps(parsed)
        exchange.strip_usage_chunk = True
    return await forward(request, fmt, path, body, exchange, parsed if looped else None)


async def llm_route(request: Request, fmt: Format, upstream_path: str):
    """A format's LLM route (:attr:`~headroom.formats.base.Format.routes`)."""
    return await proxy_request(request, fmt, upstream_path, llm_call=True)


_NOT_POST = [method for method in _ALL_METHODS if method != "POST"]


async def llm_path_other_method(request: Request, fmt: Format, upstream_path: str):
    """Any method but POST on an LLM route's path is the provider's own API and goes to the
    upstream like every pass-through (``GET /v1/chat/completions`` lists stored chat
    completions, ``client.chat.completions.list()``), unless the format refuses it
    (:meth:`~headroom.formats.base.Format.refuse_other_method`: the Responses API over a
    WebSocket gets a 426)."""
    refused = fmt.refuse_other_method(request.method, upstream_path, request.headers)
    if refused is not None:
        raise ProxyError(refused.status, refused.message, refused.code)
    return await proxy_request(request, fmt, upstream_path, llm_call=False)


async def passthrough(request: Request, rest: str, upstream_prefix: str = "/v1", fmt: Format | None = None):
    """Every other API path (count_tokens, models, files, batches …) goes through untouched,
    to the format the path or the headers name; a format may serve LLM calls on paths it
    recognises here (:meth:`~headroom.formats.base.Format.is_llm_call`)."""
    fmt = fmt or format_for_path(request.path, request.headers)
    path = f"{upstream_prefix}/{rest}"
    return await proxy_request(request, fmt, path, llm_call=fmt.is_llm_call(request.method, path))


for _format in FORMATS:
    for _route in _format.routes:
        bp.add_route(partial(llm_route, fmt=_format, upstream_path=_route.upstream_path), _route.path,
                     methods=["POST"], name=_route.name)
        bp.add_route(partial(llm_path_other_method, fmt=_format, upstream_path=_route.upstream_path), _route.path,
                     methods=_NOT_POST, name="other_methods" + _route.path.replace("/", "_"))
    for _prefix, _upstream_prefix, _name in _format.passthrough_prefixes:
        bp.add_route(partial(passthrough, upstream_prefix=_upstream_prefix, fmt=_format), _prefix + "/<rest:path>",
                     methods=_ALL_METHODS, name=_name)
bp.add_route(passthrough, "/v1/<rest:path>", methods=_ALL_METHODS, name="passthrough")


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
