"""Anonymous callers never share stored originals.

Headroom tells callers apart by their credential only; every request without one carries
the same empty credential. The response cache never serves such callers, and neither do
stored originals: ``/v1/retrieve`` and ``/v1/compress`` without an API key get a native
401 that says to send one. An anonymous LLM request is still compressed, but what was left
out of it can be retrieved by nobody.
"""

from __future__ import annotations

import pytest

from testkit.llm_requests import ANTHROPIC_VERSION, HTTP, anthropic_body, bulky_json, openai_body, retrieval_keys

KEY = "sk-ant-anonymous-ccr-test"
ANONYMOUS = {
    "anthropic": {"anthropic-version": ANTHROPIC_VERSION},
    "openai": {},
}


def assert_api_key_required(response, provider: str) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["type"] == "authentication_error"
    assert "API key" in error["message"]
    if provider == "openai":
        assert error["code"] == "api_key_required"
    else:
        assert response.json()["type"] == "error"


def compress(proxy, headers: dict, tool_output: str):
    return HTTP.post(f"{proxy.url}/v1/compress", json=anthropic_body("which orders?", tool_output=tool_output),
                     headers=headers)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_compress_and_retrieve_without_a_key_are_refused_natively(proxy, mock, provider):
    mock.reset()
    assert_api_key_required(compress(proxy, ANONYMOUS[provider], bulky_json(salt=f"anon-{provider}")), provider)
    for response in (HTTP.get(f"{proxy.url}/v1/retrieve/0123456789abcdef", headers=ANONYMOUS[provider]),
                     HTTP.post(f"{proxy.url}/v1/retrieve", json={"key": "0123456789abcdef"},
                               headers=ANONYMOUS[provider])):
        assert_api_key_required(response, provider)
        assert response.headers["cache-control"] == "no-store"
    assert mock.requests() == []  # Headroom's own endpoints: nothing forwarded


@pytest.mark.parametrize("style", ["anthropic", "openai"])
def test_an_anonymous_callers_originals_reach_no_other_caller(proxy, mock, style):
    """Anonymous A's request is compressed as usual; anonymous B (or anyone) holding the key
    from A's markers gets nothing back."""
    tool_output = bulky_json(salt=f"anonymous-llm-{style}")
    path, body = (("/v1/messages", anthropic_body("delayed?", tool_output=tool_output)) if style == "anthropic"
                  else ("/v1/chat/completions", openai_body("delayed?", tool_output=tool_output)))
    mock.reset()
    answer = HTTP.post(f"{proxy.url}{path}", json=body, headers=ANONYMOUS[style])
    assert answer.status_code == 200, answer.text
    keys = retrieval_keys(mock.last()["body"])
    assert keys, "the anonymous request was compressed"
    for how in ("get", "post"):
        anonymous_b = (HTTP.get(f"{proxy.url}/v1/retrieve/{keys[0]}", headers=ANONYMOUS[style]) if how == "get"
                       else HTTP.post(f"{proxy.url}/v1/retrieve", json={"key": keys[0]}, headers=ANONYMOUS[style]))
        assert_api_key_required(anonymous_b, style)
        assert tool_output[:200] not in anonymous_b.text
    with_a_key = HTTP.get(f"{proxy.url}/v1/retrieve/{keys[0]}", headers={"x-api-key": KEY,
                                                                          "anthropic-version": ANTHROPIC_VERSION})
    assert with_a_key.status_code == 404  # not this key's original either


def test_a_caller_with_a_key_still_compresses_and_retrieves_its_own(proxy):
    tool_output = bulky_json(salt="keyed-caller")
    mine = {"x-api-key": KEY, "anthropic-version": ANTHROPIC_VERSION}
    answer = compress(proxy, mine, tool_output)
    assert answer.status_code == 200, answer.text
    keys = answer.json()["receipt"]["retrieval_keys"]
    assert keys
    assert HTTP.get(f"{proxy.url}/v1/retrieve/{keys[0]}", headers=mine).json()["content"] == tool_output
    other = HTTP.get(f"{proxy.url}/v1/retrieve/{keys[0]}", headers={**mine, "x-api-key": KEY + "-other"})
    assert other.status_code == 404
    assert_api_key_required(HTTP.get(f"{proxy.url}/v1/retrieve/{keys[0]}", headers=ANONYMOUS["anthropic"]),
                            "anthropic")
