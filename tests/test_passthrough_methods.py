"""Every method Headroom does not handle on a provider path reaches the upstream unchanged.

Headroom handles ``POST`` on ``/v1/messages``, ``/v1/chat/completions`` and ``/v1/responses``
(and their unversioned twins); the providers define other methods on the same paths
(``GET /v1/chat/completions`` lists stored chat completions), which must not end at a 405
of Headroom's own. The one exception is a WebSocket upgrade on ``/v1/responses``: a 426.
"""

from __future__ import annotations

import httpx
import openai
import pytest

OPENAI_KEY = "sk-openai-passthrough"
OPENAI = {"authorization": f"Bearer {OPENAI_KEY}"}
ANTHROPIC = {"x-api-key": "sk-ant-passthrough", "anthropic-version": "2023-06-01"}
HTTP = httpx.Client(timeout=10.0)

# (path sent to Headroom, path the upstream must see, headers)
LLM_PATHS = [
    ("/v1/messages", "/v1/messages", ANTHROPIC),
    ("/v1/chat/completions", "/v1/chat/completions", OPENAI),
    ("/chat/completions", "/v1/chat/completions", OPENAI),
    ("/v1/responses", "/v1/responses", OPENAI),
    ("/responses", "/v1/responses", OPENAI),
]


def test_the_openai_sdk_lists_stored_chat_completions(proxy, fresh_mock):
    """``client.chat.completions.list()`` is ``GET /v1/chat/completions?limit=…``."""
    client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=OPENAI_KEY, max_retries=0)
    page = client.chat.completions.list(limit=3, order="desc")
    # The mock's answer, as it sent it: its catch-all echoes what it received, which the SDK
    # reads as a page of no items with the echo's fields alongside.
    assert list(page) == []
    assert page.model_extra == {"method": "GET", "path": "/v1/chat/completions", "query": "limit=3&order=desc"}
    seen = fresh_mock.last()
    assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/v1/chat/completions", "limit=3&order=desc")
    assert seen["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH", "PUT", "OPTIONS"])
@pytest.mark.parametrize(("path", "upstream_path", "headers"), LLM_PATHS, ids=[p for p, _, _ in LLM_PATHS])
def test_other_methods_on_llm_paths_reach_the_upstream_unchanged(proxy, fresh_mock, method, path, upstream_path,
                                                                   headers):
    body = b'{"metadata": {"k": "v"}}' if method in ("PATCH", "PUT") else b""
    answer = HTTP.request(method, f"{proxy.url}{path}?after=x", content=body,
                          headers={**headers, "x-custom": "kept"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"method": method, "path": upstream_path, "query": "after=x"}
    assert "x-headroom-error" not in answer.headers
    seen = fresh_mock.last()
    assert (seen["method"], seen["path"]) == (method, upstream_path)
    assert seen["headers"]["x-custom"] == "kept"
    assert seen["body"].encode("latin-1") == body
    for name, value in headers.items():
        assert seen["headers"][name] == value


@pytest.mark.parametrize(("path", "upstream_path", "headers"), LLM_PATHS, ids=[p for p, _, _ in LLM_PATHS])
def test_head_reaches_the_upstream(proxy, fresh_mock, path, upstream_path, headers):
    answer = HTTP.head(f"{proxy.url}{path}", headers=headers)
    assert answer.status_code == 200 and answer.content == b""
    assert (fresh_mock.last()["method"], fresh_mock.last()["path"]) == ("HEAD", upstream_path)


def test_the_request_target_reaches_the_upstream_byte_for_byte(proxy, fresh_mock):
    """Percent-encodings stay as the client wrote them, in the path and the query: an encoded
    ``/`` or ``=`` decoded on the way would name another file or another parameter."""
    for target in ("/v1/files/a%20b%2Fc/content?x=a%20b&y=%2F&z=%3D%26", "/v1/models/caf%C3%A9%25?q=%22"):
        answer = HTTP.get(f"{proxy.url}{target}", headers=OPENAI)
        assert answer.status_code == 200, answer.text
        assert fresh_mock.last()["target"] == target


@pytest.mark.parametrize("prefix", ["/chat/completions", "/responses"])
def test_unversioned_subpaths_pass_through(proxy, fresh_mock, prefix):
    """``/responses/{id}`` … for clients whose base URL lacks ``/v1``, as ``/v1/responses/{id}``."""
    for method in ("GET", "DELETE", "POST"):
        answer = HTTP.request(method, f"{proxy.url}{prefix}/resp_123/input_items", headers=OPENAI)
        assert answer.status_code == 200, answer.text
        assert (fresh_mock.last()["method"], fresh_mock.last()["path"]) == (method, f"/v1{prefix}/resp_123/input_items")
    dots = HTTP.get(f"{proxy.url}{prefix}/%2e%2e/%2e%2e/_mock/stats", headers=OPENAI)
    assert dots.status_code == 400 and dots.headers["x-headroom-error"] == "1"


@pytest.mark.parametrize("path", ["/v1/responses", "/responses"])
def test_only_a_websocket_upgrade_gets_the_426(proxy, fresh_mock, path):
    upgrade = {**OPENAI, "connection": "Upgrade", "upgrade": "websocket", "sec-websocket-version": "13",
               "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}
    refused = HTTP.get(f"{proxy.url}{path}", headers=upgrade)
    assert refused.status_code == 426 and refused.json()["error"]["code"] == "websocket_not_supported"
    assert fresh_mock.requests() == []
    plain = HTTP.get(f"{proxy.url}{path}", headers=OPENAI)
    assert plain.status_code == 200 and fresh_mock.last()["path"] == "/v1/responses"
