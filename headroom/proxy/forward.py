"""Send one request upstream and relay the answer: JSON in one piece, SSE event by event,
a pass-through download piece by piece.

The client's status, headers and body come back unchanged (less hop-by-hop headers). A
stream that breaks mid-way ends with the format's own error event, never a hang; a
client that goes away cancels the upstream request and closes its connection.

Memory stays bounded whatever the upstream sends. An answer Headroom reads whole (every LLM
answer, whose usage it parses and which it may cache, and every JSON body) may take at most
``--max-response-mb`` once decompressed, else the client gets a native 502 and the upstream
connection is closed (:func:`~headroom.proxy.upstream.read_body`). An SSE event may take at
most :data:`~headroom.proxy.sse.MAX_EVENT_BYTES`, else the stream ends with the format's
error event. Any other pass-through body (``GET /v1/files/{id}/content``, a PDF, a JSONL
batch output) is relayed piece by piece as it arrives, at the client's pace and whatever its
size, so a 500 MB download works and holds only a few pieces at a time.
"""

from __future__ import annotations

import asyncio
from time import perf_counter

from sanic import Request
from sanic.compat import Header
from sanic.response import HTTPResponse

from headroom.formats import Format
from headroom.formats.base import Splicer
from headroom.proxy import http1
from headroom.proxy.exchange import Exchange
from headroom.proxy.headers import request_headers, response_headers
from headroom.proxy.resources import resources_of
from headroom.proxy.response import ProxyResponse
from headroom.proxy.response_cache import MAX_ENTRY_BYTES, CachedAnswer
from headroom.proxy.sse import EventBuffer, EventTooLong
from headroom.proxy.tool_loop import Retrieval
from headroom.proxy.upstream import UpstreamError, UpstreamRequest, read_body
from headroom.proxy.usage import StreamUsage, normalised, usage_from_body


def upstream_url(request: Request, fmt: Format, path: str) -> str:
    """The format's upstream base URL (its config field), the path, and the query as sent."""
    base = getattr(resources_of(request).config, fmt.upstream_option)
    query = request.query_string
    return f"{base}{path}?{query}" if query else f"{base}{path}"


async def forward(
    request: Request, fmt: Format, path: str, body: bytes | None, exchange: Exchange,
    looped: dict | None = None,
) -> HTTPResponse | None:
    """Proxy ``request`` (with ``body``) to ``path`` on the format's upstream.

    Returns the response for a buffered answer, or ``None`` once a streamed answer (SSE, or
    a pass-through download) has been relayed in full through ``request.respond()``.
    ``looped``: ``body`` parsed, when it declares the retrieval tool (:mod:`~headroom.proxy.tool_loop`
    answers the model's calls to it).
    """
    resources = resources_of(request)
    upstream_request = UpstreamRequest(
        request.method, upstream_url(request, fmt, path), request_headers(request.headers.items()), body
    )
    exchange.upstream_started = perf_counter()
    exchange.upstream_calls += 1
    resp = await resources.upstream.open(upstream_request)
    exchange.upstream_answered = perf_counter()
    retrieval = None
    if looped is not None and fmt.tool_loop is not None and exchange.caller is not None and resp.status == 200:
        config = resources.config
        retrieval = Retrieval(fmt.tool_loop, resources.store, exchange.caller, exchange, resources.upstream,
                              upstream_request, looped, config.max_retrievals, config.ccr_ttl,
                              config.max_response_bytes, resources.pipeline_options.backoff)
    try:
        exchange.status = resp.status
        headers = Header(response_headers(resp.headers.items()))
        if resp.encoding is not None:  # one the client could not decode: the body goes on encoded, and says so
            headers["content-encoding"] = resp.headers["content-encoding"]
        if "x-request-id" not in headers:  # OpenAI sends its own; keep it, it is the one support asks for
            headers["x-request-id"] = exchange.request_id
        if resp.content_type == "text/event-stream":
            headers.update(exchange.headroom_headers())
            await relay_stream(request, resp, headers, fmt, exchange, retrieval)
            return None
        if not exchange.llm and _is_download(request, resp):  # a pass-through non-JSON body
            await relay_download(request, resp, headers, exchange)
            return None
        payload = await read_body(resp, resources_of(request).config.max_response_bytes)
        if retrieval is not None:
            exchange.status, payload = await retrieval.json_answer(payload)
        exchange.upstream_finished = perf_counter()
        exchange.bytes_out = len(payload)
        if exchange.status < 400:
            exchange.usage = usage_from_body(fmt, payload)
            if exchange.cache_key and exchange.status == 200 and len(payload) <= MAX_ENTRY_BYTES:
                exchange.answer = CachedAnswer(resp.headers.get("content-type", "application/json"), payload)
        headers.update(exchange.headroom_headers(resources.pricing))
        return ProxyResponse(payload, status=exchange.status, headers=headers)
    except asyncio.CancelledError:
        # The client went away: drop the upstream connection instead of reusing it.
        resp.close()
        raise
    finally:
        resp.release()


def _is_download(request: Request, resp: http1.Response) -> bool:
    """A body to relay piece by piece: not JSON (read whole and bounded), and a body at all."""
    mime = resp.content_type
    return (mime != "application/json" and not mime.endswith("+json") and request.method != "HEAD"
            and resp.status not in (204, 304))


async def relay_download(
    request: Request, resp: http1.Response, headers: Header, exchange: Exchange
) -> None:
    """Relay a pass-through body piece by piece, as it arrives, with no size limit.

    Sanic's ``send`` waits while the client's socket is full and the upstream client stops reading
    while its buffer is full, so a slow client slows the upstream instead of filling memory. An
    upstream ``Content-Length`` is kept when the bytes are unchanged (not decompressed), so
    download progress shows. If the upstream breaks off, so does the client's connection:
    a cut download must never look complete.
    """
    if resp.content_length is not None and "content-encoding" not in resp.headers:
        headers["content-length"] = str(resp.content_length)
    headers.update(exchange.headroom_headers(resources_of(request).pricing))
    response = await request.respond(status=resp.status, headers=headers)
    exchange.first_byte_at = perf_counter()
    try:
        async for chunk in resp.content.iter_any():
            await response.send(chunk)
            exchange.bytes_out += len(chunk)
    except (http1.ConnectionBroken, TimeoutError):
        exchange.error = "download_broken"
        resp.close()
        # No final chunk: the client sees a cut, not an end. Sanic's own server hands us the
        # socket's transport; under an ASGI server (Sanic's MockTransport, no abort) the error
        # goes on up, and the server drops a connection whose response has begun.
        abort = getattr(request.transport, "abort", None)
        if abort is None:
            raise
        abort()
        return
    finally:
        exchange.upstream_finished = perf_counter()
    await response.eof()


async def relay_stream(
    request: Request, resp: http1.Response, headers: Header, fmt: Format, exchange: Exchange,
    retrieval: Retrieval | None = None,
) -> None:
    """Relay SSE as whole events, as soon as each arrives.

    Only complete events are sent, so when the upstream breaks mid-event the client gets a
    well-formed stream that ends with the format's error event rather than half a line.
    The same error event ends a stream whose event (or line) grows past
    :data:`~headroom.proxy.sse.MAX_EVENT_BYTES` without ending: waiting for its end would
    hold whatever the upstream sends.

    With ``retrieval`` the events go through the format's splicer on their way (nothing is
    buffered: only a retrieval call's own events and the end of the answer are held), and
    when the model called the retrieval tool the continuation's stream follows in the same
    response (:mod:`~headroom.proxy.tool_loop`).
    """
    response = await request.respond(status=resp.status, headers=headers)
    meter = StreamUsage(fmt, strip_usage_chunk=exchange.strip_usage_chunk)
    kept: list[bytes] | None = [] if exchange.cache_key and resp.status == 200 else None
    kept_bytes = 0
    framing = EventBuffer()
    broken = False
    last_sent = b""  # the latest events passed on (an error event may continue their numbering)
    splicer = retrieval.loop.splicer() if retrieval is not None else None

    async def pass_on(complete: bytes, splice: bool = True) -> None:
        nonlocal kept, kept_bytes, last_sent
        if not exchange.first_byte_at:
            exchange.first_byte_at = perf_counter()
        if splicer is not None and splice:
            complete = splicer.feed(complete)
        events = meter.feed(complete)
        if events:
            last_sent = events
            await response.send(events)
            exchange.bytes_out += len(events)
            if kept is not None:
                kept.append(events)
                kept_bytes += len(events)
                if kept_bytes > MAX_ENTRY_BYTES:
                    kept = None

    source = resp
    try:
        while True:
            async for chunk in source.content.iter_any():
                complete = framing.push(chunk)
                if complete:
                    await pass_on(complete)
            complete, pending = framing.close()  # the end of the stream settles a final CR
            if complete:
                await pass_on(complete)
            if pending:  # the upstream ended without a final blank line: pass it on as is
                await response.send(pending)
                exchange.bytes_out += len(pending)
                kept = None  # not a well-formed stream: never replay it
                break
            if retrieval is None or splicer is None:
                break
            following = await _continuation(retrieval, splicer)
            if following is None:
                break
            if source is not resp:
                source.release()
            source = following
            if source.status != 200 or source.content_type != "text/event-stream":
                broken = True
                exchange.error = exchange.error or "retrieval_continuation_failed"
                await response.send(fmt.stream_error_event(
                    f"The upstream answered the retrieval continuation with HTTP {source.status}", last_sent))
                break
            splicer.resume()
        if splicer is not None and retrieval is not None and not broken:
            await retrieval.remember(splicer.visible())
            await pass_on(splicer.close(), splice=False)
    except (http1.ConnectionBroken, TimeoutError, EventTooLong, UpstreamError) as exc:
        broken = True
        if isinstance(exc, EventTooLong):
            source.close()  # the rest of the event is still on its way: never reuse this connection
            exchange.error = "stream_event_too_large"
            message = f"The upstream sent an event over {exc.limit / 2**20:g} MiB; the stream was cut"
        elif isinstance(exc, UpstreamError):
            exchange.error = exchange.error or "retrieval_continuation_failed"
            message = f"The retrieval continuation failed: {exc.message}"
        else:
            timed_out = isinstance(exc, TimeoutError)
            reason = "timed out" if timed_out else "broke off"
            exchange.error = exchange.error or ("stream_timeout" if timed_out else "stream_broken")
            message = f"The upstream stream {reason} before it was complete"
        await response.send(fmt.stream_error_event(message, last_sent))
    except asyncio.CancelledError:
        if source is not resp:
            source.close()
        raise
    finally:
        if source is not resp:
            source.release()
    exchange.upstream_finished = perf_counter()
    exchange.usage = meter.usage
    if splicer is not None and splicer.usage is not None:
        exchange.usage = normalised(fmt, splicer.usage) or meter.usage
    # An upstream may end a 200 stream with its own error event: such a stream is not cached.
    if kept is not None and not broken and not fmt.stream_failed(b"".join(kept[-1:])):
        exchange.answer = CachedAnswer(headers.get("content-type", "text/event-stream"), b"".join(kept))
    await response.eof()


async def _continuation(retrieval: Retrieval, splicer: Splicer) -> http1.Response | None:
    """The next upstream stream of the answer, when the model called the retrieval tool."""
    body = await retrieval.follow(splicer.turn)
    return None if body is None else await retrieval.open(body)


async def replay(request: Request, answer: CachedAnswer, exchange: Exchange) -> HTTPResponse | None:
    """Serve a cached answer: JSON as it was, or a stream as the same events."""
    exchange.status = 200
    exchange.bytes_out = len(answer.body)
    headers = {"content-type": answer.content_type, "x-request-id": exchange.request_id}
    headers.update(exchange.headroom_headers())
    if not answer.is_stream:
        return ProxyResponse(answer.body, status=200, headers=headers)
    response = await request.respond(status=200, headers=headers)
    exchange.first_byte_at = perf_counter()
    await response.send(answer.body)
    await response.eof()
    return None
