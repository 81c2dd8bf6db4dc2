"""``/dashboard``: one self-contained page that draws ``/stats`` live.

The page (``headroom/data/dashboard.html``) is HTML, inline CSS and a small hand-written
script that polls ``/stats`` and draws SVG: nothing is loaded from anywhere else. Its
Content-Security-Policy allows exactly its own inline script and style, by their SHA-256
hashes (computed here from the file), and network access to this origin only.

With ``--admin-token`` the page itself needs the token, like ``/stats``: as
``x-headroom-admin-token``, ``Authorization: Bearer`` or ``?token=`` (what a browser can
send). Without it a browser gets a 401 page with a form to type it in; other clients get
Headroom's usual JSON 401. The page moves a ``?token=`` out of the address bar into the
tab's session storage at once and sends it to ``/stats`` as a header. Headroom never logs
query strings (no access log; errors log the path only); ``Referrer-Policy: no-referrer``
keeps it out of any Referer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from importlib import resources

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, html

from headroom.proxy.admin import ADMIN_HEADER
from headroom.proxy.errors import ProxyError
from headroom.proxy.request_id import request_id_for
from headroom.proxy.resources import resources_of
from headroom.proxy.security_headers import PRIVATE

bp = Blueprint("dashboard")

PAGE = resources.files("headroom").joinpath("data/dashboard.html").read_text(encoding="utf-8")


def _hashes(page: str, tag: str) -> str:
    """``'sha256-…'`` sources for every inline ``<tag>`` block of the page, as CSP wants."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.S)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)


def _csp(page: str, *extra: str) -> str:
    parts = ["default-src 'none'"]
    if "<script>" in page:
        parts.append(f"script-src {_hashes(page, 'script')}")
    parts += [f"style-src {_hashes(page, 'style')}", *extra, "base-uri 'none'", "frame-ancestors 'none'"]
    return "; ".join(parts)


PAGE_CSP = _csp(PAGE, "connect-src 'self'", "img-src 'self' data:", "form-action 'none'")

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Headroom dashboard: admin token</title>
<style>body{font:16px/1.4 system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem}
input,button{font:inherit;padding:.3rem .5rem}p.bad{color:#c7372f}</style>
</head><body>
<h1>Headroom dashboard</h1>
%s<form method="get" action="/dashboard" autocomplete="off">
<input type="text" autocomplete="username" value="headroom-admin" hidden>
<label>Admin token <input type="password" name="token" autofocus autocomplete="current-password"></label>
<button type="submit">Open</button>
</form>
<p>This proxy runs with <code>--admin-token</code>. The page moves the token out of the address bar
and sends it to <code>/stats</code> as a header.</p>
</body></html>
"""
LOGIN_CSP = _csp(LOGIN_PAGE, "form-action 'self'")

_COMMON = {**PRIVATE, "referrer-policy": "no-referrer", "x-headroom-overhead-ms": "0.000"}


def _headers(request: Request, csp: str) -> dict[str, str]:
    return {**_COMMON, "content-security-policy": csp, "x-request-id": request_id_for(request)}


def _given_token(request: Request) -> str | None:
    given = request.headers.get(ADMIN_HEADER)
    if given is None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given = value.strip()
    if given is None:
        given = request.args.get("token")
    return given


def _authorised(request: Request) -> bool:
    token = resources_of(request).config.admin_token
    if not token:
        return True
    given = _given_token(request)
    # surrogateescape: bytes Sanic could not decode compare as sent (never a 500)
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())


@bp.route("/dashboard", methods=["GET", "HEAD"], name="dashboard")
async def dashboard(request: Request) -> HTTPResponse:
    if _authorised(request):
        return html(PAGE, headers=_headers(request, PAGE_CSP))
    if "text/html" not in request.headers.get("accept", ""):
        raise ProxyError(401, f"The dashboard requires the admin token (the {ADMIN_HEADER} header, "
                         "Authorization: Bearer, or ?token=)", "admin_token_required")
    wrong = '<p class="bad">That token is not the admin token.</p>\n' if _given_token(request) is not None else ""
    return html(LOGIN_PAGE % wrong, status=401, headers=_headers(request, LOGIN_CSP))
