"""The proxy's routes: LLM calls and passthrough.

One request's path: :func:`proxy_request` decodes and checks the body, (later) runs the
transform pipeline, forwards it with :func:`headroom.proxy.forward.forward`, and records
what happened once the answer is out.
"""

from __future__ import annotations

import asyncio
import zlib
from time import perf_counter, time

import ujson
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from headroom.observability import metrics
from headroom.outcome import RequestOutcome
from headroom.proxy.errors import ProxyError, error_response
from headroom.proxy.forward import Exchange, forward
from headroom.proxy.request_id import request_id_for
from headroom.proxy.providers import ANTHROPIC, OPENAI, Provider, provider_for_path

bp = Blueprint("proxy")

_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def decoded_body(request: Request) -> bytes:
    """The request body as plain bytes, undoing a ``content-encoding`` the client applied."""
    raw = request.body or b""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise ProxyError(415, f"Unsupported content-encoding {encoding!r}: send gzip, deflate or identity")
    limit = request.app.ctx.config.max_body_bytes
    try:
        decoder = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
        body = decoder.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise ProxyError(400, f"Request body is not valid {encoding} data: {exc}") from None
    if len(body) > limit:
        limit_mb = request.app.ctx.config.max_body_mb
        raise ProxyError(413, f"Request body too large once decompressed: the limit is {limit_mb:g} MiB")
    return body


def check_json_object(body: bytes) -> dict:
    try:
        parsed = ujson.loads(body)
    except (ValueError, TypeError) as exc:
        raise ProxyError(400, f"Request body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ProxyError(400, "Request body must be a JSON object")
    return parsed


async def proxy_request(request: Request, provider: Provider, path: str, *, llm_call: bool) -> HTTPResponse | None:
    outcome = RequestOutcome(
        request_id=request_id_for(request), timestamp=time(), provider=provider.name, path=path,
        bytes_in=len(request.body or b""),
    )
    exchange = Exchange(outcome)
    response: HTTPResponse | None = None
    try:
        body = decoded_body(request)
        if llm_call:
            parsed = check_json_object(body)
            outcome.model = parsed.get("model") if isinstance(parsed.get("model"), str) else None
            outcome.stream = parsed.get("stream") is True
            if request.app.ctx.config.log_messages:
                outcome.messages = parsed.get("messages")
        response = await forward(request, provider, path, body, exchange)
    except ProxyError as exc:
        outcome.status = exc.status
        outcome.error = outcome.error or f"http_{exc.status}"
        response = error_response(provider, exc.status, exc.message, exc.code, outcome.request_id)
        response.headers.update(exchange.headroom_headers())
    except asyncio.CancelledError:
        outcome.status = 499  # client closed the connection
        outcome.error = "client_disconnected"
        raise
    finally:
        # After the answer has been written: settling is never on the client's critical path.
        asyncio.get_running_loop().call_soon(settle, request.app, exchange)
    return response


def settle(app, exchange: Exchange) -> None:
    """Close the books on one request: timings, error kind, and every consumer of figures."""
    outcome = exchange.outcome
    now = perf_counter()
    outcome.latency_ms = (now - exchange.started) * 1000.0
    outcome.overhead_ms = max(0.0, outcome.latency_ms - exchange.upstream_ms)
    usage = exchange.usage
    outcome.input_tokens, outcome.output_tokens = usage.input_tokens, usage.output_tokens
    outcome.cache_read_tokens, outcome.cache_write_tokens = usage.cache_read_tokens, usage.cache_write_tokens
    if exchange.first_byte_at:
        outcome.ttfb_ms = (exchange.first_byte_at - exchange.started) * 1000.0
    if outcome.error is None and outcome.status >= 400:
        outcome.error = f"upstream_{outcome.status // 100}xx"  # relayed from the upstream as it was
    app.ctx.stats.record(outcome)
    metrics.observe(outcome)
    if app.ctx.request_log is not None:
        app.ctx.request_log.write(outcome)


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
