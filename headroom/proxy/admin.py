"""Headroom's own endpoints: health, statistics, Prometheus metrics.

``/health``, ``/livez`` and ``/readyz`` are always open (load balancers, Kubernetes and
Claude Code probe them). ``/stats``,
``/metrics`` and the OpenAPI description require ``--admin-token`` when one is set, given
as ``x-headroom-admin-token: T`` or ``Authorization: Bearer T``.
"""

from __future__ import annotations

import asyncio
import hmac

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from headroom.observability import metrics
from headroom.proxy import stats
from headroom.proxy.bookkeeping import flush_stats
from headroom.proxy.errors import ProxyError
from headroom.proxy.request_id import request_id_for
from headroom.proxy.resources import resources_of
from headroom.proxy.security_headers import OWN, PRIVATE
from headroom.state.store import StatsSnapshot, StoreUnavailable
from headroom.transforms import tokens

bp = Blueprint("admin")

ADMIN_HEADER = "x-headroom-admin-token"


def require_admin(request: Request, *, header_only: bool = False) -> None:
    """Refuse with a native 401 unless the request carries the admin token.

    ``header_only`` is for endpoints whose ``Authorization`` header carries the caller's
    own API key (``/v1/retrieve``): there only the dedicated header counts.
    """
    token = resources_of(request).config.admin_token
    if not token:
        return
    given = request.headers.get(ADMIN_HEADER)
    if given is None and not header_only:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given = value.strip()
    # surrogateescape: header bytes Sanic could not decode compare as sent (never a 500)
    if given is None or not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode()):
        where = f"the {ADMIN_HEADER} header" if header_only else f"the {ADMIN_HEADER} header or Authorization: Bearer"
        raise ProxyError(401, f"This Headroom endpoint requires the admin token ({where})", "admin_token_required")


def _own_headers(request: Request, private: bool = True) -> dict[str, str]:
    """Headers of a response Headroom builds itself: its ids and the security headers
    (``cache-control: no-store`` too unless the content is public: ``/``, ``/health``)."""
    return {**(PRIVATE if private else OWN), "x-request-id": request_id_for(request),
            "x-headroom-overhead-ms": "0.000"}


@bp.route("/", methods=["GET", "HEAD"], name="root")
async def root(request: Request):
    """Claude Code probes the base URL before it starts; answer like a live API would."""
    return json({"status": "ok", "service": "headroom"}, headers=_own_headers(request, private=False))


async def _snapshot(request: Request) -> StatsSnapshot | None:
    resources = resources_of(request)
    await flush_stats(resources)
    try:
        return await resources.store.stats_read(stats.SERIES)
    except StoreUnavailable:
        return None


async def _model_status(request: Request) -> dict | None:
    """The model server's own status; ``{"state": "down"}`` when it cannot be reached;
    ``None`` without ``--llmlingua``."""
    model = resources_of(request).model
    if model is None:
        return None
    return await model.status(timeout_s=0.5) or {"state": "down"}


@bp.get("/health")
async def health(request: Request):
    """Always 200 while the process serves: with the shared store down it reports "degraded".
    With ``--llmlingua``, ``"llmlingua"`` says whether the model is loading, ready, failed or down."""
    snapshot = await _snapshot(request)
    body = {
        "status": "healthy" if snapshot is not None else "degraded",
        "optimize": resources_of(request).config.optimize,
        "stats": stats.health_of(snapshot.counters if snapshot else {}),
    }
    model = await _model_status(request)
    if model is not None:
        body["llmlingua"] = model["state"]
    return json(body, headers=_own_headers(request, private=False))


@bp.get("/livez")
async def livez(request: Request):
    """The process serves requests: nothing else is checked, so that a Redis or model-server
    outage never gets a healthy proxy restarted (Kubernetes' liveness probe)."""
    return json({"status": "alive"}, headers=_own_headers(request, private=False))


@bp.get("/readyz")
async def readyz(request: Request):
    """Whether to route requests here (Kubernetes' readiness probe): 503 while the worker is
    draining, while its tokenizer still loads (a request's counts would be estimates), and,
    with ``--fail-closed``, while the shared store is unreachable (requests would get 503s)."""
    resources = resources_of(request)
    reason = None
    if resources.draining:
        reason = "draining"
    elif resources.config.optimize and not tokens.loaded():
        reason = "warming up"
    elif resources.config.fail_closed:
        try:
            await resources.store.get("headroom:readyz")
        except StoreUnavailable:
            reason = "shared store unreachable (--fail-closed)"
    body = {"status": "ready"} if reason is None else {"status": "not ready", "reason": reason}
    return json(body, status=200 if reason is None else 503, headers=_own_headers(request))


@bp.get("/stats")
async def detailed_stats(request: Request):
    require_admin(request)
    snapshot = await _snapshot(request)
    if snapshot is None:
        raise ProxyError(503, "Statistics are kept in the shared store, which is unreachable right now")
    try:
        backoffs = await resources_of(request).store.tool_backoffs()
    except StoreUnavailable:
        backoffs = []
    body = stats.detailed(snapshot, backoffs)
    model = await _model_status(request)
    if model is not None:
        body["llmlingua"] = {k: v for k, v in model.items() if k != "id"}
    return json(body, headers=_own_headers(request))


@bp.get("/metrics")
async def prometheus_metrics(request: Request):
    require_admin(request)
    # Summing every worker's file takes milliseconds with many series: keep it off the loop.
    body, content_type = await asyncio.get_running_loop().run_in_executor(None, metrics.render)
    return HTTPResponse(body, content_type=content_type, headers=_own_headers(request))
