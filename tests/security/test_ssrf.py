"""SSRF: no request can make the proxy call anything but its configured upstream, under
``/v1/``.

Every attack is written byte for byte on a raw socket: absolute URLs and authority forms
in the request line, ``//host`` paths, ``..`` segments (plain, percent-encoded, double
encoded, with ``%2F`` and backslashes), ``@`` in the path, fragments, and ``Host`` /
``X-Forwarded-Host`` / ``Forwarded`` games — on the LLM routes, pass-through routes and
Headroom's own. A second listener on 127.0.0.1 plays the attacker's host (and is named in
every request): it must never see a connection. Each answer is either Headroom's own 4xx
(and then the upstream saw nothing) or the upstream's, in which case the mock upstream
recorded exactly that one request, on its own host, under ``/v1/``.
"""

from __future__ import annotations

import json

import pytest

from testkit.llm_requests import ANTHROPIC_VERSION
from testkit.raw_http import raw_request, send_raw
from testkit.services import stop

BODIES = {
    "/v1/messages": {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
    "/v1/chat/completions": {"model": "gpt-4o", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
    "/chat/completions": {"model": "gpt-4o", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
    "/v1/messages/count_tokens": {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/compress": {"messages": [{"role": "user", "content": "hi"}]},
}
ROUTES = [  # (method, path): every kind of /v1 route
    ("POST", "/v1/messages"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/chat/completions"),
    ("POST", "/v1/messages/count_tokens"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/claude-sonnet-4-5"),
    ("DELETE", "/v1/files/file-abc"),
    ("GET", "/v1/retrieve/0123456789abcdef"),
    ("POST", "/v1/compress"),
]
OWN_ROUTES = ("/v1/retrieve/", "/v1/compress")  # answered by Headroom, never forwarded


def request_targets(path: str, evil: str) -> list[str]:
    """The request-line targets that name the attacker's host for ``path``."""
    return [f"http://{evil}{path}", f"https://{evil}{path}", "http://evil.example" + path,
            f"http://user:pass@{evil}{path}", f"//{evil}{path}", f"{evil}{path}", f"{path}?next=http://{evil}/",
            f"{path}#@{evil}"]


def path_games(evil: str) -> list[str]:
    """Paths under /v1/ that try to climb out of it or to smuggle an authority."""
    return [
        f"/v1/../../{evil}/x", "/v1/../../_mock/stats", "/v1/models/../../_mock/stats", "/v1/./models",
        "/v1/%2e%2e/%2e%2e/_mock/stats", "/v1/%2E%2E/_mock/stats", "/v1/..%2F..%2F_mock/stats",
        "/v1/..%2f_mock/stats", "/v1/%252e%252e/%252e%252e/_mock/stats", "/v1/..%255C_mock/stats",
        "/v1/..\\..\\_mock/stats", "/v1/%2E%2E%5C_mock/stats", "/v1/messages/..%2F..%2F_mock%2Fstats",
        f"/v1/%2F%2F{evil}/x", f"/v1/%2f%2f{evil}/x", f"/v1/%252F%252F{evil}/x", f"/v1/\\\\{evil}/x",
        f"/v1/@{evil}/x", f"/v1/models@{evil}", f"/v1//{evil}/x", f"/v1/http://{evil}/x",
        f"/v1/http:%2F%2F{evil}/x", "/v1/models/%00", "/v1/models/..;/_mock/stats",
    ]


def host_games(evil: str) -> list[tuple[str, str]]:
    """Headers that name another host: a proxy that trusted any of them would be steerable."""
    return [("x-forwarded-host", evil), ("forwarded", f"for=1.2.3.4;host={evil};proto=http"),
            ("x-forwarded-proto", "http"), ("x-forwarded-server", evil), ("x-original-url", f"//{evil}/x"),
            ("x-rewrite-url", f"http://{evil}/x"), ("x-host", evil)]


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, mock):
    from testkit import services

    handle = services.start_proxy(tmp_path_factory.mktemp("ssrf") / "proxy.out", mock.url, "--no-cache")
    yield handle
    stop(handle.proc)


def attack(proxy, mock, evil, method: str, target: str, path: str, host: str, anthropic: bool) -> None:
    """Send one attack and check where it went."""
    credentials = [("x-api-key", "sk-ant-ssrf"), ("anthropic-version", ANTHROPIC_VERSION)] if anthropic else [
        ("authorization", "Bearer sk-ssrf")]
    body = json.dumps(BODIES[path]).encode() if path in BODIES else b""
    headers = credentials + host_games(evil.authority) + [("content-type", "application/json")]
    mock.reset()
    reply = send_raw(proxy.url, raw_request(method, target, headers, body, host=host))
    what = f"{method} {target} (host {host}) -> {reply.raw[:300]!r}"
    assert reply.status, f"no answer: {what}"
    assert reply.status < 500, what
    seen = mock.requests()
    if reply.headers.get("x-headroom-error") == "1" or path.startswith(OWN_ROUTES):
        assert seen == [], what
    else:  # relayed from the upstream: exactly this request, on the upstream's own host, under /v1/
        assert len(seen) == 1, what
        assert seen[0]["headers"]["host"] == mock.authority, what
        assert seen[0]["path"].startswith("/v1/") and "/../" not in seen[0]["path"], what
    assert evil.received == [], what


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_request_line_cannot_name_another_host(proxy, mock, evil, method, path):
    for target in request_targets(path, evil.authority):
        for host in (evil.authority, "evil.example", f"{evil.authority}@127.0.0.1"):
            attack(proxy, mock, evil, method, target, path, host, anthropic=True)
    attack(proxy, mock, evil, method, f"http://{evil.authority}{path}", path, evil.authority, anthropic=False)


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_path_cannot_leave_v1_or_name_a_host(proxy, mock, evil, method):
    for target in path_games(evil.authority):
        for anthropic in (True, False):
            attack(proxy, mock, evil, method, target, "/v1/…", evil.authority, anthropic)


def test_dot_segments_are_refused_natively(proxy, mock):
    for target in ("/v1/../../_mock/stats", "/v1/%2e%2e/_mock/stats", "/v1/..%2F_mock/stats", "/v1/a/%252e%252e/b"):
        mock.reset()
        reply = send_raw(proxy.url, raw_request("GET", target, [("authorization", "Bearer sk")]))
        assert reply.status == 400 and reply.headers["x-headroom-error"] == "1", reply.raw
        assert "segment" in reply.json()["error"]["message"]
        assert mock.requests() == []
    # Dots inside a segment are ordinary characters, passed through as sent.
    reply = send_raw(proxy.url, raw_request("GET", "/v1/files/report..v2.txt", [("authorization", "Bearer sk")]))
    assert reply.status == 200 and mock.last()["path"] == "/v1/files/report..v2.txt"


def test_unparseable_targets_get_an_answer(proxy, evil):
    """Authority-form and CONNECT targets: Sanic could not even build its stand-in request
    for the error answer, dropped the connection and logged a traceback each time. Now
    they get a native 400."""
    before = proxy.output().count("Traceback")
    for line in (f"GET {evil.authority}/v1/models", f"CONNECT {evil.authority}", "CONNECT evil.example:443",
                 f"OPTIONS {evil.authority}"):
        method, target = line.split(" ", 1)
        reply = send_raw(proxy.url, raw_request(method, target, [("authorization", "Bearer sk")], host=evil.authority))
        assert reply.status == 400 and reply.headers["x-headroom-error"] == "1", (line, reply.raw)
    assert proxy.output().count("Traceback") == before
    assert evil.received == []


def test_upstream_redirects_are_relayed_not_followed(tmp_path, mock, evil, redirecting_upstream):
    """An upstream that redirects to another host: the client gets the redirect as it was
    sent (transparency), the proxy never follows it."""
    from testkit import services

    proxy = services.start_proxy(tmp_path / "proxy.out", f"http://{redirecting_upstream.authority}", "--no-cache")
    try:
        for method, path in (("POST", "/v1/messages"), ("POST", "/v1/chat/completions"), ("GET", "/v1/models")):
            body = json.dumps(BODIES.get(path, {})).encode() if method == "POST" else b""
            reply = send_raw(proxy.url, raw_request(method, path, [("x-api-key", "sk"), ("content-type",
                                                                                           "application/json")], body))
            assert reply.status == 307 and reply.headers["location"] == f"http://{evil.authority}/v1/stolen", reply.raw
        assert len(redirecting_upstream.received) == 3
        assert evil.received == []
    finally:
        stop(proxy.proc)
