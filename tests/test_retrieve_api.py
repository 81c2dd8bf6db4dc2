"""``/v1/retrieve`` with ``lines`` and ``query``: the ``headroom_retrieve`` tool's answer,
through the real proxy, for the caller whose request stored the original only.

The answers' format itself is covered in tests/transforms/test_retrieval.py; here, that the
endpoint reads the arguments from where each method carries them, answers with exactly what
:func:`~headroom.transforms.retrieval.answer` gives, and keeps originals per caller.
"""

from __future__ import annotations

import pytest

from headroom.transforms.retrieval import answer
from testkit.llm_requests import HTTP
from testkit.originals import anthropic_headers, service_log, store_original

MINE = "sk-ant-retrieve-lines-mine"
THEIRS = "sk-ant-retrieve-lines-theirs"


@pytest.fixture(scope="module")
def stored(proxy):
    original = service_log("api")
    return original, store_original(proxy.url, MINE, original)


def get(proxy, key: str, api_key: str = MINE, **params):
    return HTTP.get(f"{proxy.url}/v1/retrieve/{key}", params=params, headers=anthropic_headers(api_key))


def post(proxy, body: dict, api_key: str = MINE):
    return HTTP.post(f"{proxy.url}/v1/retrieve", json=body, headers=anthropic_headers(api_key))


@pytest.mark.parametrize("arguments", [{}, {"lines": "120-125"}, {"lines": "97"}, {"query": "ERROR payment"},
                                       {"lines": "150-300", "query": "declined"}, {"lines": "9999"},
                                       {"query": "no such words"}])
def test_get_and_post_answer_as_the_tool_does(proxy, stored, arguments):
    original, key = stored
    expected = answer(original, arguments.get("lines"), arguments.get("query"))
    for response in (get(proxy, key, **arguments), post(proxy, {"key": key, **arguments})):
        assert response.status_code == 200, response.text
        assert response.json() == {"key": key, "content": expected}
        assert response.headers["cache-control"] == "no-store"


def test_a_query_pulls_one_fact_back_without_the_rest(proxy, stored):
    original, key = stored
    content = post(proxy, {"key": key, "query": "ord-api-00194"}).json()["content"]
    assert "194:" in content and "card expired" in content
    assert len(content) < len(original) / 20  # the fact and its context, not the log again


def test_another_caller_gets_404_whatever_it_asks(proxy, stored):
    _, key = stored
    for response in (get(proxy, key, THEIRS, lines="1-5"), post(proxy, {"key": key, "query": "ERROR"}, THEIRS)):
        assert response.status_code == 404, response.text
        assert "ERROR" not in response.text and "worker-" not in response.text


def test_an_anonymous_caller_gets_401(proxy, stored):
    _, key = stored
    response = HTTP.post(f"{proxy.url}/v1/retrieve", json={"key": key, "lines": "1"},
                         headers={"anthropic-version": "2023-06-01"})
    assert response.status_code == 401, response.text
    assert "API key" in response.json()["error"]["message"]


@pytest.mark.parametrize("field", ["lines", "query"])
def test_a_non_string_argument_is_a_native_400(proxy, stored, field):
    _, key = stored
    response = post(proxy, {"key": key, field: 120})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert f'"{field}" must be a string' in response.json()["error"]["message"]
