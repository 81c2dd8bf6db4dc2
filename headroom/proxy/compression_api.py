"""The pipeline's own endpoints, for SDK users and for the model itself.

``POST /v1/compress`` runs the compression pipeline alone: messages in, compressed messages
and the receipt out, nothing forwarded. ``GET /v1/retrieve/{key}`` (or ``POST /v1/retrieve``
with ``{"key": …}``) returns an original that compression left out, to the caller whose
request produced it — the API key in the request decides, and any other caller gets 404.
Optional ``lines`` ("120-245") and ``query`` (query-string parameters of the GET, fields of
the POST body) narrow it to what the ``headroom_retrieve`` tool would answer
(:func:`headroom.transforms.retrieval.answer`): numbered lines, or the lines matching.
Both need an API key: a request without one gets a 401 (see :func:`_caller`).
With ``--admin-token`` both also need the ``x-headroom-admin-token`` header (not
``Authorization``, which carries the caller's own API key here).

Every retrieval answered here is counted, once, by
:func:`~headroom.transforms.retrieval_policy.note_retrieval` (the learning back-off, the
``headroom_retrievals_total`` metric, ``/stats``) and, with ``--log-file``, written to the
request log (``retrievals``, ``retrieved_tokens``: what ``headroom report`` nets savings by).
``headroom mcp`` tries each API key it has in turn: it marks every try but the last with
:data:`PROBE_HEADER`, and a miss so marked is not counted (the next key may hold it).
"""

from __future__ import annotations

import time

from sanic import Blueprint, Request
from sanic.response import json

from headroom.formats import format_for_path, named, names
from headroom.outcome import RequestOutcome
from headroom.proxy.admin import require_admin
from headroom.proxy.body import json_object, request_body
from headroom.proxy.errors import ProxyError
from headroom.proxy.exchange import receipt_headers
from headroom.proxy.request_id import request_id_for
from headroom.proxy.resources import resources_of
from headroom.proxy.routes import caller_credential
from headroom.proxy.security_headers import PRIVATE
from headroom.state.identity import caller_hash
from headroom.state.store import StoreUnavailable
from headroom.transforms import retrieve, run_pipeline
from headroom.transforms.retrieval import PROBE_HEADER, answer
from headroom.transforms.retrieval_policy import Outcome, RetrievalNote, note_retrieval

bp = Blueprint("compression_api")


def _caller(request: Request, endpoint: str) -> str:
    """The caller's hash; a native 401 for a request without a credential.

    Stored originals belong to the caller whose request produced them, and Headroom can
    only tell callers apart by their credential. Anonymous callers all share one (empty)
    credential, so handing them originals would let any of them read any other's, which
    is why the response cache never serves them either. An anonymous caller gains nothing
    from a key it could never use, so ``/v1/compress`` refuses them too."""
    credential = caller_credential(request, format_for_path(request.path, request.headers))
    if not credential:
        raise ProxyError(401, f"{endpoint} needs the API key your requests are sent with (x-api-key, "
                              "Authorization: Bearer or api-key): stored originals belong to that key alone",
                         "api_key_required")
    return caller_hash(resources_of(request).secret, credential)


def _optional_text(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ProxyError(400, f'"{name}" must be a string ("120-245" for lines, words to look for as query)')


async def _original(request: Request, key: str, lines: str | None = None, query: str | None = None):
    require_admin(request, header_only=True)
    caller = _caller(request, "/v1/retrieve")
    request_id = request_id_for(request)
    try:
        original = await retrieve(resources_of(request).store, caller, key)
    except StoreUnavailable:
        await _count(request, request_id, caller, key, "error", 503)
        raise ProxyError(503, "Stored originals are unreachable right now (shared state is down)") from None
    if original is None:
        if PROBE_HEADER not in request.headers:
            await _count(request, request_id, caller, key, "miss", 404)
        raise ProxyError(404, f"No stored original {key!r} for this API key (unknown, expired, or another caller's)")
    content = answer(original, lines, query)
    await _count(request, request_id, caller, key, "ok", 200, content)
    return json({"key": key, "content": content}, headers={**PRIVATE, "x-request-id": request_id})


async def _count(request: Request, request_id: str, caller: str, key: str, outcome: Outcome, status: int,
                 content: str = "") -> RetrievalNote:
    """Count one retrieval for the policy, the metrics and ``/stats``, and log it (never raises)."""
    resources = resources_of(request)
    note = await note_retrieval(resources.store, caller, key, outcome, content, resources.pipeline_options.backoff)
    if resources.request_log is not None:
        resources.request_log.write(RequestOutcome(
            request_id=request_id, timestamp=time.time(), path="/v1/retrieve", status=status, caller=caller,
            provider=format_for_path(request.path, request.headers).provider,
            error=None if status == 200 else f"retrieval_{outcome}",
            retrievals=1, retrieved_tokens=note.tokens))
    return note


@bp.get("/v1/retrieve/<key:str>")
async def retrieve_by_path(request: Request, key: str):
    return await _original(request, key, request.args.get("lines"), request.args.get("query"))


@bp.post("/v1/retrieve")
async def retrieve_by_body(request: Request):
    body = json_object(request_body(request))
    key = body.get("key")
    if not isinstance(key, str):
        raise ProxyError(400, 'Send {"key": "<retrieval key>"} (optionally "lines": "120-245" or "query": "words")')
    return await _original(request, key, _optional_text(body.get("lines"), "lines"),
                           _optional_text(body.get("query"), "query"))


@bp.post("/v1/compress")
async def compress(request: Request):
    """Body: an Anthropic Messages or OpenAI chat request (``messages`` required), or with
    ``"provider": "responses"`` an OpenAI Responses request (``input`` required, and given back).

    The body's format is named by ``"provider"`` (a format's name, or ``"openai"`` for Chat
    Completions: the field predates the formats) if given, else guessed from the headers
    like every other route (``x-api-key``/``anthropic-version`` mean Anthropic).
    """
    require_admin(request, header_only=True)
    caller = _caller(request, "/v1/compress")
    body = json_object(request_body(request))
    given = body.pop("provider", None)
    if given is not None and given not in names():
        accepted = [f'"{name}"' for name in names()]
        raise ProxyError(400, f'"provider" must be {", ".join(accepted[:-1])} or {accepted[-1]}')
    fmt = named(given) if given is not None else format_for_path("/v1/compress", request.headers)
    field = fmt.conversation_field
    if not isinstance(body.get(field), list):
        raise ProxyError(400, f'"{field}" must be a list')
    resources = resources_of(request)
    new_body, receipt = await run_pipeline(body, fmt, resources.store, caller, resources.pipeline_options)
    result = new_body if new_body is not None else body
    return json(
        {
            "provider": given or fmt.provider,
            field: result[field],
            "receipt": {
                "tokens_before": receipt.tokens_before,
                "tokens_after": receipt.tokens_after,
                "tokens_saved": receipt.tokens_saved,
                "transforms": receipt.transforms,
                "retrieval_keys": receipt.ccr_keys,
                "dropped_turns": receipt.dropped_turns,
                "errors": receipt.errors,
                "estimated": receipt.estimated,
            },
        },
        headers={**PRIVATE, "x-request-id": request_id_for(request), **receipt_headers(receipt)},
        ensure_ascii=False,
    )
