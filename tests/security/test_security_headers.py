"""Security headers on every response Headroom builds itself, none on relayed ones; the
OpenAPI description and any other built-in page behind the admin token.

- Every own response: ``x-content-type-options: nosniff``, ``x-frame-options: DENY``,
  ``content-security-policy: default-src 'none'; frame-ancestors 'none'``.
- Private content (errors, ``/stats``, ``/metrics``, ``/v1/retrieve``, ``/v1/compress``, the
  OpenAPI JSON) adds ``cache-control: no-store``.
- Answers relayed from the upstream (and cached answers replayed) carry exactly the
  upstream's headers: none of these is added.
"""

from __future__ import annotations

import json

import pytest

from headroom.proxy.security_headers import OWN, PRIVATE
from testkit.llm_requests import ANTHROPIC_VERSION, HTTP, anthropic_body, bulky_json, openai_body, retrieval_keys
from testkit.raw_http import raw_request, send_raw
from testkit.services import stop
from testkit.waiting import wait_for

ADMIN_TOKEN = "security-headers-admin-token"
ADMIN = {"x-headroom-admin-token": ADMIN_TOKEN}
ANTHROPIC = {"x-api-key": "sk-ant-headers", "anthropic-version": ANTHROPIC_VERSION}
OPENAI = {"authorization": "Bearer sk-headers"}
RATE_LIMITED = {"x-api-key": "sk-ant-headers-limited", "anthropic-version": ANTHROPIC_VERSION}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, mock):
    from testkit import services

    handle = services.start_proxy(tmp_path_factory.mktemp("headers") / "proxy.out", mock.url,
                                  "--admin-token", ADMIN_TOKEN, "--rpm", "20", "--max-body-mb", "1")
    yield handle
    stop(handle.proc)


@pytest.fixture(scope="module")
def open_proxy(tmp_path_factory, mock):
    from testkit import services

    handle = services.start_proxy(tmp_path_factory.mktemp("headers-open") / "proxy.out", mock.url, "--no-cache")
    yield handle
    stop(handle.proc)


def assert_has(headers, expected: dict[str, str], what: str) -> None:
    for name, value in expected.items():
        assert headers.get(name) == value, (what, name, dict(headers))


def assert_none_added(headers, what: str) -> None:
    """None of Headroom's values is there (the upstream's own, e.g. a stream's
    ``cache-control: no-cache``, pass unchanged)."""
    for name, value in PRIVATE.items():
        assert headers.get(name) != value, (what, name, dict(headers))
    assert "x-frame-options" not in headers and "content-security-policy" not in headers, what


def test_public_pages(proxy):
    for path in ("/health", "/"):
        response = HTTP.get(f"{proxy.url}{path}")
        assert response.status_code == 200
        assert_has(response.headers, OWN, path)
    assert HTTP.head(f"{proxy.url}/").headers["x-content-type-options"] == "nosniff"


def test_admin_endpoints_with_and_without_the_token(proxy):
    for path in ("/stats", "/metrics", "/docs/openapi.json"):
        for headers in (ADMIN, {"authorization": f"Bearer {ADMIN_TOKEN}"}):
            response = HTTP.get(f"{proxy.url}{path}", headers=headers)
            assert response.status_code == 200, (path, response.text)
            assert_has(response.headers, PRIVATE, path)
        for headers in ({}, {"x-headroom-admin-token": "wrong"}, {"authorization": "Bearer wrong"},
                        {"x-headroom-admin-token": ADMIN_TOKEN[:-1]}, {"x-headroom-admin-token": ADMIN_TOKEN.upper()}):
            response = HTTP.get(f"{proxy.url}{path}", headers=headers)
            assert response.status_code == 401, (path, headers, response.text)
            assert_has(response.headers, PRIVATE, f"{path} refused")
            assert response.headers["x-headroom-error"] == "1"
    assert "paths" in HTTP.get(f"{proxy.url}/docs/openapi.json", headers=ADMIN).json()


def test_no_other_built_in_pages(proxy, open_proxy):
    """sanic-ext's UI pages (and anything else under /docs) do not exist, with or without a
    token, and with no token configured at all: nothing there but the OpenAPI JSON."""
    for target, headers in ((proxy, ADMIN), (proxy, {}), (open_proxy, {})):
        for path in ("/docs", "/docs/", "/docs/swagger", "/docs/redoc", "/docs/openapi.yaml", "/docs/swagger.json",
                     "/openapi.json", "/swagger", "/redoc", "/docs/static/swagger-ui.css"):
            response = HTTP.get(f"{target.url}{path}", headers=headers)
            assert response.status_code in (401, 404), (path, response.status_code)
            assert "text/html" not in response.headers.get("content-type", ""), path
            assert_has(response.headers, PRIVATE, path)
    response = HTTP.get(f"{open_proxy.url}/docs/openapi.json")  # open without --admin-token, like /stats
    assert response.status_code == 200
    assert_has(response.headers, PRIVATE, "open openapi")


def test_retrieve_and_compress(proxy, mock):
    body = anthropic_body("which orders are delayed?", tool_output=bulky_json(salt="headers"))
    assert HTTP.post(f"{proxy.url}/v1/messages", json=body, headers=ANTHROPIC).status_code == 200
    key = retrieval_keys(mock.last()["body"])[0]
    for response in (
        HTTP.get(f"{proxy.url}/v1/retrieve/{key}", headers={**ANTHROPIC, **ADMIN}),
        HTTP.post(f"{proxy.url}/v1/retrieve", json={"key": key}, headers={**ANTHROPIC, **ADMIN}),
        HTTP.post(f"{proxy.url}/v1/compress", json=body, headers={**ANTHROPIC, **ADMIN}),
    ):
        assert response.status_code == 200, response.text
        assert_has(response.headers, PRIVATE, response.url.path)
    for response in (
        HTTP.get(f"{proxy.url}/v1/retrieve/{key}", headers=ANTHROPIC),  # no admin token
        HTTP.get(f"{proxy.url}/v1/retrieve/0123456789abcdef", headers={**ANTHROPIC, **ADMIN}),  # unknown
        HTTP.post(f"{proxy.url}/v1/retrieve", json={}, headers={**ANTHROPIC, **ADMIN}),
        HTTP.post(f"{proxy.url}/v1/compress", json={"messages": "x"}, headers={**ANTHROPIC, **ADMIN}),
    ):
        assert response.status_code in (400, 401, 404), response.text
        assert_has(response.headers, PRIVATE, f"{response.url.path} error")


def test_every_error_headroom_produces(proxy):
    responses = {
        "404 route": HTTP.get(f"{proxy.url}/nope", headers=ANTHROPIC),
        "405 method": HTTP.get(f"{proxy.url}/v1/compress", headers=ANTHROPIC),
        "400 not json": HTTP.post(f"{proxy.url}/v1/messages", content=b"{", headers=ANTHROPIC),
        "400 openai": HTTP.post(f"{proxy.url}/v1/chat/completions", content=b"[]", headers=OPENAI),
        "400 dot segment": HTTP.get(f"{proxy.url}/v1/%2e%2e/x", headers=OPENAI),
        "413 body": HTTP.post(f"{proxy.url}/v1/messages", content=b"x" * (2 * 2**20), headers=ANTHROPIC),
        "415 encoding": HTTP.post(f"{proxy.url}/v1/messages", content=b"{}",
                                  headers={**ANTHROPIC, "content-encoding": "br"}),
    }
    limited = [HTTP.post(f"{proxy.url}/v1/messages", json=anthropic_body(f"limit {i}"), headers=RATE_LIMITED)
               for i in range(21)]
    responses["429 rate limit"] = limited[-1]
    for what, response in responses.items():
        assert response.status_code == int(what[:3]), (what, response.text)
        assert response.headers["x-headroom-error"] == "1", what
        assert_has(response.headers, PRIVATE, what)
    for raw in (raw_request("GET", "host:1/v1/models", []), raw_request("GET", "/v1/models", [("bad header", "x")]),
                raw_request("GET", "/v1/models", [("x-big", "x" * 20_000)])):
        reply = send_raw(proxy.url, raw)
        assert 400 <= reply.status < 500, reply.raw[:300]
        assert_has(reply.headers, PRIVATE, reply.raw[:60])


def test_relayed_answers_are_left_as_the_upstream_sent_them(proxy, mock):
    """Transparency: none of the headers is added to what the upstream answered, success
    or error, JSON or stream, live or replayed from the cache, LLM call or pass-through."""
    relay_anthropic = {"x-api-key": "sk-ant-relay", "anthropic-version": ANTHROPIC_VERSION}
    relay_openai = {"authorization": "Bearer sk-relay"}
    for path, make_body, headers in (("/v1/messages", anthropic_body, relay_anthropic),
                                     ("/v1/chat/completions", openai_body, relay_openai)):
        for stream in (False, True):
            body = make_body(f"relayed {stream}", stream=stream)
            response = HTTP.post(f"{proxy.url}{path}", json=body, headers=headers)
            assert response.status_code == 200 and "x-headroom-error" not in response.headers
            assert_none_added(response.headers, f"{path} {stream}")
            hit = wait_for(lambda body=body, path=path, headers=headers: (lambda r: r if r.headers.get(
                "x-headroom-cache") == "hit" else None)(HTTP.post(f"{proxy.url}{path}", json=body, headers=headers)),
                what="a cache hit")
            assert_none_added(hit.headers, f"{path} {stream} replayed")
            error = HTTP.post(f"{proxy.url}{path}", json=make_body(f"relayed error {stream}", stream=stream),
                              headers={**headers, "x-mock-status": "500"})
            assert error.status_code == 500 and "x-headroom-error" not in error.headers
            assert_none_added(error.headers, f"{path} upstream error")
    for response in (HTTP.get(f"{proxy.url}/v1/models", headers=relay_anthropic),
                     HTTP.post(f"{proxy.url}/v1/messages/count_tokens", json=anthropic_body("n"),
                               headers=relay_anthropic)):
        assert response.status_code == 200
        assert_none_added(response.headers, response.url.path)
    # Whatever the upstream itself sends, it gets through unchanged.
    relayed = HTTP.post(f"{proxy.url}/v1/messages", json=anthropic_body("cookie"),
                        headers={**relay_anthropic, "x-mock-set-cookie": "a=b", "cache-control": "no-store"})
    assert relayed.headers["set-cookie"] == "a=b"
    assert json.loads(relayed.content)["type"] == "message"
