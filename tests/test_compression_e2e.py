"""Compression through the real proxy: what the upstream receives, turn after turn.

The corpus (testkit/corpus) holds realistic agent tool outputs, each with a question whose
answer is one value in the data. Every case goes through ``headroom proxy`` to the mock
upstream, and the test reads what the upstream actually got.
"""

from __future__ import annotations

import copy
import json

import anthropic
import httpx
import openai
import pytest

from headroom.transforms import ccr
from testkit.corpus.cases import all_cases, body_for, tool_output

CASES = all_cases()
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-compression", "anthropic-version": "2023-06-01"}
OPENAI_HEADERS = {"authorization": "Bearer sk-openai-compression"}


def headers_for(provider: str) -> dict:
    return ANTHROPIC_HEADERS if provider == "anthropic" else OPENAI_HEADERS


def path_for(provider: str) -> str:
    return "/v1/messages" if provider == "anthropic" else "/v1/chat/completions"


def forwarded_body(mock) -> dict:
    return json.loads(mock.last()["body"].encode("latin-1"))


@pytest.fixture(scope="module")
def optimizing(start_proxy):
    return start_proxy("--no-cache", "--no-rate-limit")


@pytest.fixture(scope="module")
def corpus_results(optimizing, mock):
    """Send every case once; keep what the upstream saw and the receipt headers."""
    results = {}
    for case in CASES:
        mock.reset()
        body = body_for(case)
        response = httpx.post(f"{optimizing.url}{path_for(case.provider)}", json=body,
                              headers=headers_for(case.provider), timeout=30)
        assert response.status_code == 200, response.text
        results[case.name] = (case, response, forwarded_body(mock))
    return results


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_needed_value_reaches_the_upstream(corpus_results, case):
    _, response, sent = corpus_results[case.name]
    output = tool_output(sent, case.provider)
    for answer in case.answers:
        assert answer in output, f"{case.name}: {answer!r} was lost"
    if case.same_line:
        assert any(all(part in line for part in case.same_line) for line in output.splitlines())
    if case.unchanged:
        assert output == case.content
        assert response.headers["x-headroom-tokens-saved"] == "0"


def test_corpus_savings_reach_the_target(corpus_results, capsys):
    before = after = 0
    rows = []
    for name, (_case, response, _) in corpus_results.items():
        b = int(response.headers.get("x-headroom-tokens-before", 0))
        a = int(response.headers.get("x-headroom-tokens-after", 0))
        before, after = before + b, after + a
        rows.append(f"{name:24s} {b:>8d} {a:>8d} {100 * (b - a) / b if b else 0:6.1f}%  "
                    f"{response.headers['x-headroom-transforms']}")
    with capsys.disabled():
        print("\nsavings through the proxy (whole requests, o200k tokens):")
        print("\n".join(rows))
        print(f"{'TOTAL':24s} {before:>8d} {after:>8d} {100 * (before - after) / before:6.1f}%")
    assert (before - after) / before >= 0.60


def test_receipts_feed_health(corpus_results, optimizing):
    health = httpx.get(f"{optimizing.url}/health").json()
    assert health["stats"]["tokens_saved"] > 0 and health["stats"]["savings_percent"] > 50


def test_cache_control_and_system_stay_where_the_client_put_them(corpus_results):
    case, _, sent = corpus_results["github_issues_json"]
    original = body_for(case)
    assert sent["system"] == original["system"]
    # The client's tools as sent, then the retrieval tool Headroom declares (--retrieval-tool on).
    assert sent["tools"][:-1] == original["tools"] and sent["tools"][-1]["name"] == "headroom_retrieve"
    assert sent["messages"][:2] == original["messages"][:2]  # the question and the tool call
    block = sent["messages"][2]["content"][0]
    assert block["cache_control"] == {"type": "ephemeral"}
    assert block["tool_use_id"] == original["messages"][2]["content"][0]["tool_use_id"]
    assert list(block) == list(original["messages"][2]["content"][0])  # key order kept


def test_retrieve_returns_the_original_to_its_caller_only(corpus_results, optimizing):
    case, _, sent = corpus_results["app_server_log"]
    (key,) = ccr.marker_keys(tool_output(sent, case.provider))
    mine = httpx.get(f"{optimizing.url}/v1/retrieve/{key}", headers=ANTHROPIC_HEADERS)
    assert mine.status_code == 200 and mine.json()["content"] == case.content
    by_body = httpx.post(f"{optimizing.url}/v1/retrieve", json={"key": key}, headers=ANTHROPIC_HEADERS)
    assert by_body.json()["content"] == case.content
    other = httpx.get(f"{optimizing.url}/v1/retrieve/{key}", headers={**ANTHROPIC_HEADERS, "x-api-key": "sk-other"})
    assert other.status_code == 404 and other.json()["error"]["type"] == "not_found_error"


def test_retrieve_and_compress_need_the_admin_token_when_set(start_proxy):
    proxy = start_proxy("--admin-token", "adm")
    case = CASES[0]
    for method, path, payload in (("GET", "/v1/retrieve/0123456789abcdef", None),
                                  ("POST", "/v1/compress", {"messages": body_for(case)["messages"]})):
        denied = httpx.request(method, f"{proxy.url}{path}", json=payload, headers=ANTHROPIC_HEADERS)
        assert denied.status_code == 401
        allowed = httpx.request(method, f"{proxy.url}{path}", json=payload,
                                headers={**ANTHROPIC_HEADERS, "x-headroom-admin-token": "adm"})
        assert allowed.status_code in (200, 404)


def test_compress_endpoint_runs_the_pipeline_alone(optimizing, fresh_mock):
    case = next(c for c in CASES if c.name == "pytest_failure_log")
    body = body_for(case)
    response = httpx.post(f"{optimizing.url}/v1/compress", headers=ANTHROPIC_HEADERS,
                          json={"provider": "anthropic", "messages": body["messages"], "model": body["model"]})
    assert response.status_code == 200
    result = response.json()
    compressed = result["messages"][2]["content"][0]["content"]
    assert all(answer in compressed for answer in case.answers) and len(compressed) < len(case.content) / 3
    assert result["receipt"]["tokens_saved"] > 0 and result["receipt"]["transforms"]
    assert fresh_mock.requests() == []  # nothing was forwarded


def test_no_optimize_forwards_every_byte(start_proxy, fresh_mock):
    proxy = start_proxy("--no-optimize", "--no-cache")
    raw = json.dumps(body_for(CASES[0])).encode()
    response = httpx.post(f"{proxy.url}/v1/messages", content=raw, headers=ANTHROPIC_HEADERS)
    assert response.status_code == 200
    assert fresh_mock.last()["body"].encode("latin-1") == raw
    assert httpx.get(f"{proxy.url}/health").json()["optimize"] is False


def test_store_outage_forwards_the_original_bytes(start_proxy, own_redis, fresh_mock):
    proxy = start_proxy("--redis-url", own_redis.url, "--no-cache", "--state-secret", "outage-0123456789abcdef0")
    own_redis.kill()
    raw = json.dumps(body_for(CASES[0])).encode()
    response = httpx.post(f"{proxy.url}/v1/messages", content=raw, headers=ANTHROPIC_HEADERS)
    assert response.status_code == 200
    # Fail-open: the client's own body, nothing compressed; only the retrieval tool is declared as on
    # every request (dropping it during an outage would change the tool list mid-conversation).
    sent = json.loads(fresh_mock.last()["body"].encode("latin-1"))
    original = json.loads(raw)
    assert sent["tools"][:-1] == original.pop("tools") and sent.pop("tools")[-1]["name"] == "headroom_retrieve"
    assert sent == original


# --- cache safety over a conversation -----------------------------------------------------------

def _conversation(provider: str) -> list[dict]:
    """Three turns of an agent session, each a tool call whose big result is then answered."""
    opening = next(c for c in CASES if c.provider == provider and not c.unchanged)
    picks = [opening] + [c for c in CASES if c is not opening and not c.unchanged and c.name.endswith("log")][:2]
    turns, body = [], copy.deepcopy(body_for(picks[0]))
    turns.append(copy.deepcopy(body))
    for i, case in enumerate(picks[1:], start=2):
        call_id = f"call_turn{i}" if provider == "openai" else f"toolu_turn{i}"
        if provider == "anthropic":
            body["messages"] += [
                {"role": "assistant", "content": [{"type": "text", "text": f"Answer {i - 1}."},
                                                  {"type": "tool_use", "id": call_id, "name": case.tool,
                                                   "input": case.tool_input}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": case.content},
                                             {"type": "text", "text": case.question}]},
            ]
        else:
            body["messages"] += [
                {"role": "assistant", "content": f"Answer {i - 1}."},
                {"role": "user", "content": case.question},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": call_id, "type": "function",
                     "function": {"name": case.tool, "arguments": json.dumps(case.tool_input)}}]},
                {"role": "tool", "tool_call_id": call_id, "content": case.content},
            ]
        turns.append(copy.deepcopy(body))
    return turns


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_earlier_turns_reach_the_upstream_identical(start_proxy, fresh_mock, provider, stream, workers):
    proxy = start_proxy("--workers", str(workers), "--no-cache", "--no-rate-limit")
    sent_turns = []
    for turn in _conversation(provider):
        turn["stream"] = stream
        if provider == "anthropic":
            client = anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-turns", max_retries=0)
            params = {**{k: v for k, v in turn.items() if k != "stream"}, "max_tokens": 1024}
            if stream:
                with client.messages.stream(**params) as s:
                    s.get_final_message()
            else:
                client.messages.create(**params)
        else:
            client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-openai-turns", max_retries=0)
            result = client.chat.completions.create(**turn)
            if stream:
                list(result)
        client.close()
        sent_turns.append(forwarded_body(fresh_mock))
    first, second, third = sent_turns
    assert len(first["messages"]) < len(second["messages"]) < len(third["messages"])
    for earlier, later in ((first, second), (second, third)):
        shared = len(earlier["messages"])
        # Byte for byte: each earlier message serialises exactly as it did on its own turn.
        assert [json.dumps(m) for m in later["messages"][:shared]] == [json.dumps(m) for m in earlier["messages"]]
        for field in ("system", "tools"):
            assert later.get(field) == earlier.get(field)
    assert len(json.dumps(third)) < len(json.dumps(_conversation(provider)[2])) / 2  # and it did compress
