"""Google Gemini through the proxy, driven by the real ``google-genai`` SDK.

A function-call round trip whose result is a big JSON tool output: the proxy compresses the
``functionResponse`` (it reaches the mock smaller, still a JSON object with the same keys),
and the next turn re-sends it byte for byte. Streaming and not; usage from
``usageMetadata`` reaches ``/stats``; Headroom's own errors come back in Google's shape.
"""

from __future__ import annotations

import json

import httpx
import pytest
from google import genai
from google.genai import types

from headroom.formats.base import dumps
from headroom.transforms.ccr import marker_keys

MODEL = "gemini-2.5-flash"
KEY = "gk-test-gemini-key-1"


def _orders() -> str:
    rows = [{"id": f"ord_{i:05d}", "status": "failed" if i == 150 else "shipped", "amount": 10 + i % 7,
             "customer": f"cust_{i % 13}", "region": "eu-west-1"} for i in range(300)]
    return json.dumps(rows, indent=2)


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy()


def _client(proxy) -> genai.Client:
    return genai.Client(api_key=KEY, http_options={"base_url": proxy.url})


def _function_responses(recorded: dict) -> list[dict]:
    body = json.loads(recorded["body"].encode("latin-1"))
    return [p for c in body["contents"] for p in c.get("parts", []) if "functionResponse" in p]


def test_function_call_round_trip_is_compressed_and_stable(proxy, fresh_mock):
    client = _client(proxy)
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="list_orders", description="List recent orders",
        parameters=types.Schema(type="OBJECT", properties={"limit": types.Schema(type="INTEGER")}))])
    config = types.GenerateContentConfig(tools=[tool])
    question = types.Content(role="user", parts=[types.Part(text="Why did ord_00150 fail?")])
    first = client.models.generate_content(model=MODEL, contents=[question], config=config)
    call = first.function_calls[0]
    assert call.name == "list_orders"

    output = _orders()
    answer = types.Content(role="user", parts=[types.Part.from_function_response(
        name="list_orders", response={"output": output})])
    turn = [question, first.candidates[0].content, answer]
    second = client.models.generate_content(model=MODEL, contents=turn, config=config)
    assert "1 function responses" in second.text
    sent = fresh_mock.last()
    assert sent["path"].endswith(f"/models/{MODEL}:generateContent")  # /v1beta/ or /v1/, as the SDK chose
    assert sent["headers"]["x-goog-api-key"] == KEY  # forwarded as sent
    (part,) = _function_responses(sent)
    response = part["functionResponse"]["response"]
    assert list(response) == ["output"] and isinstance(response["output"], str)
    assert len(response["output"]) < len(output) / 2  # compressed, as the JSON compressor does
    assert "ord_00150" in response["output"]  # the row the question is about is kept

    follow_up = types.Content(role="user", parts=[types.Part(text="And which region was it in?")])
    client.models.generate_content(model=MODEL, contents=[*turn, second.candidates[0].content, follow_up],
                                   config=config)
    (again,) = _function_responses(fresh_mock.last())
    assert json.dumps(again, sort_keys=True) == json.dumps(part, sort_keys=True)
    raw_first = sent["body"].encode("latin-1")
    raw_again = fresh_mock.last()["body"].encode("latin-1")
    marker = json.dumps(response["output"], ensure_ascii=False)[1:-1].encode()  # as it sits in the JSON body
    assert marker in raw_first and marker in raw_again


def test_a_structured_function_result_is_compressed_to_json_of_the_same_shape(proxy, fresh_mock):
    """The SDK's function results are JSON values, not texts: an array of records reaches the
    mock as an array (the records asked about kept whole, the CCR marker its first item), the
    other values as sent, and the next turn re-sends the part byte for byte."""
    client = _client(proxy)
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="list_orders", description="List recent orders",
        parameters=types.Schema(type="OBJECT", properties={"limit": types.Schema(type="INTEGER")}))])
    config = types.GenerateContentConfig(tools=[tool])
    question = types.Content(role="user", parts=[types.Part(text="Why did ord_00150 fail?")])
    first = client.models.generate_content(model=MODEL, contents=[question], config=config)
    rows = json.loads(_orders())
    result = {"orders": rows, "page": {"next": None, "total": 300, "price": 1.5}}
    answer = types.Content(role="user", parts=[types.Part.from_function_response(
        name=first.function_calls[0].name, response=result)])
    turn = [question, first.candidates[0].content, answer]
    second = client.models.generate_content(model=MODEL, contents=turn, config=config)
    assert "1 function responses" in second.text
    sent = fresh_mock.last()
    (part,) = _function_responses(sent)
    response = part["functionResponse"]["response"]
    assert list(response) == ["orders", "page"] and response["page"] == result["page"]
    orders = response["orders"]
    assert isinstance(orders, list) and len(json.dumps(orders)) < len(json.dumps(rows)) / 5
    assert orders[0].startswith("[headroom: ") and len(marker_keys(orders[0])) == 1
    kept = [row for row in orders if isinstance(row, dict)]
    assert all(row in rows for row in kept) and rows[150] in kept  # whole records, the failed one among them
    assert all(isinstance(gap, str) and gap.endswith("rows omitted") for gap in orders[1:] if gap not in kept)

    (key,) = marker_keys(orders[0])
    original = httpx.get(f"{proxy.url}/v1/retrieve/{key}", headers={"x-goog-api-key": KEY}, timeout=10)
    assert original.status_code == 200 and json.loads(original.json()["content"]) == rows

    follow_up = types.Content(role="user", parts=[types.Part(text="And which region was it in?")])
    client.models.generate_content(model=MODEL, contents=[*turn, second.candidates[0].content, follow_up],
                                   config=config)
    exact = dumps(part)  # the part as the proxy writes it: compact, in place in the body
    assert exact in sent["body"].encode("latin-1") and exact in fresh_mock.last()["body"].encode("latin-1")


def test_streaming_relays_chunks_and_counts_usage(proxy, fresh_mock):
    client = _client(proxy)
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Say hello"))
    assert "".join(c.text or "" for c in chunks).startswith("Gemini mock reply")
    assert fresh_mock.last()["path"].endswith(f"/models/{MODEL}:streamGenerateContent")
    assert "alt=sse" in fresh_mock.last()["query"]

    # The same stream again is a cache hit, replayed as the same events.
    headers = {"x-goog-api-key": KEY, "content-type": "application/json"}
    body = {"contents": [{"role": "user", "parts": [{"text": "Cache me"}]}]}
    url = f"{proxy.url}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    miss = httpx.post(url, json=body, headers=headers, timeout=30)
    hit = httpx.post(url, json=body, headers=headers, timeout=30)
    assert miss.headers["x-headroom-cache"] == "miss" and hit.headers["x-headroom-cache"] == "hit"
    assert hit.content == miss.content and b"usageMetadata" in hit.content

    stats = httpx.get(f"{proxy.url}/stats", timeout=10).json()
    assert stats["requests_by_provider"].get("gemini", 0) >= 3


def test_usage_and_cost_from_usage_metadata(proxy, fresh_mock):
    headers = {"x-goog-api-key": "gk-usage", "cache-control": "no-store"}
    body = {"contents": [{"role": "user", "parts": [{"text": "x" * 400}]}]}
    response = httpx.post(f"{proxy.url}/v1beta/models/{MODEL}:generateContent", json=body, headers=headers,
                          timeout=30)
    assert response.status_code == 200
    usage = response.json()["usageMetadata"]
    assert usage["cachedContentTokenCount"] > 0
    metrics = httpx.get(f"{proxy.url}/metrics", timeout=10).text
    assert 'headroom_prompt_cache_read_tokens_total{model="gemini-2.5-flash",provider="gemini"}' in metrics


def test_own_errors_are_in_googles_shape_and_other_paths_pass_through(proxy, fresh_mock):
    bad = httpx.post(f"{proxy.url}/v1beta/models/{MODEL}:generateContent?key=gk-query", content=b"{nope",
                     headers={"content-type": "application/json"}, timeout=10)
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT" and error["message"]
    assert "gk-query" not in bad.text

    counted = httpx.post(f"{proxy.url}/v1beta/models/{MODEL}:countTokens", json={"contents": []},
                         headers={"x-goog-api-key": KEY}, timeout=10)
    assert counted.status_code == 200
    assert fresh_mock.last()["path"] == f"/v1beta/models/{MODEL}:countTokens"
