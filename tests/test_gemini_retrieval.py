"""The retrieval tool for Gemini, end to end: the real ``google-genai`` SDK, the real proxy, and
the mock upstream acting as a careful model (:mod:`testkit.retrieving_model`).

A service log the client's ``read_log`` function returned is cut by compression; the model,
asked for one line of it, calls ``headroom_retrieve`` with the marker's key; the proxy answers
the call itself and asks again, and the client gets one ordinary answer, streamed or not,
that quotes the line. The client never sees the call. Over a 15-turn session with several
retrievals (one of them in the same answer as a call to the client's own function), every
request the upstream gets starts with the exact bytes of the one before it.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from google import genai
from google.genai import types

from testkit.originals import service_log
from testkit.retrieving_gemini import LEAD, SIGNATURE
from testkit.retrieving_model import TOOL_NAME
from testkit.waiting import wait_for

MODEL = "gemini-2.5-flash"
COUNTED = "gemini-2.5-pro"  # the model of the calls whose usage a test counts in /stats (and no other)
READ_LOG = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="read_log", description="Read the service log",
    parameters=types.Schema(type="OBJECT", properties={"limit": types.Schema(type="INTEGER")}))])


@pytest.fixture(scope="module")
def proxy(start_proxy):
    # No back-off: the 15-turn session retrieves often (the policy would rightly turn lossless).
    return start_proxy("--no-cache", "--retrieval-backoff", "0")


def _client(proxy, key: str) -> genai.Client:
    return genai.Client(api_key=key, http_options={"base_url": proxy.url})


def _config(seek: str | None = None, mixed: str | None = None) -> types.GenerateContentConfig:
    headers = {}
    if seek:
        headers["x-mock-seek"] = seek
    if mixed:
        headers["x-mock-mixed"] = mixed
    return types.GenerateContentConfig(tools=[READ_LOG], http_options=types.HttpOptions(headers=headers))


def _log(salt: str) -> str:
    """A 400-line service log whose every line names the log (``/api/<salt>/orders/N``)."""
    return service_log(salt).replace("/api/orders/", f"/api/{salt}/orders/")


def _fact(salt: str, line: int) -> str:
    """What the model looks for: line ``line`` of log ``salt`` (an INFO line, which compression cuts)."""
    assert line % 97
    return f"GET /api/{salt}/orders/{line} 200"


def _line(salt: str, line: int) -> str:
    return _log(salt).splitlines()[line - 1].strip()


def _log_result(salt: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part.from_function_response(
        name="read_log", response={"output": _log(salt)})])


def _ask(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


def _bodies(mock) -> list[dict]:
    return [json.loads(r["body"].encode("latin-1")) for r in mock.requests() if ":" in r["path"].rsplit("/", 1)[-1]]


def _raw_bodies(mock) -> list[str]:
    return [r["body"].encode("latin-1").decode() for r in mock.requests() if ":" in r["path"].rsplit("/", 1)[-1]]


def _no_retrieval_call(response: types.GenerateContentResponse) -> None:
    assert not [c for c in response.function_calls or () if c.name == TOOL_NAME]
    assert TOOL_NAME not in response.model_dump_json()


def _log_conversation(client, salt: str) -> list[types.Content]:
    """The user's request, the model's call to ``read_log``, and the log it returned."""
    question = _ask("Read the service log")
    call = client.models.generate_content(model=MODEL, contents=[question], config=_config())
    assert call.function_calls[0].name == "read_log"
    return [question, call.candidates[0].content, _log_result(salt)]


def test_a_retrieval_is_answered_by_the_proxy_in_json_and_in_a_stream(proxy, fresh_mock):
    client = _client(proxy, "gk-retrieval-one")
    conversation = _log_conversation(client, "one")
    fact, line = _fact("one", 123), _line("one", 123)
    fresh_mock.reset()
    before = _stats(proxy)

    whole = client.models.generate_content(model=COUNTED, contents=conversation, config=_config(fact))
    assert whole.text == f"{LEAD}Found: 123:{line}"  # the line as the retrieval answer numbers it
    _no_retrieval_call(whole)
    first, second = _bodies(fresh_mock)
    sent = json.dumps(first)
    assert "/api/orders/123 " not in sent and re.search(r"\[headroom:[^\]]*[0-9a-f]{16}", sent)  # cut, marked
    assert first["tools"][-1]["functionDeclarations"][0]["name"] == TOOL_NAME
    assert second["contents"][:len(first["contents"])] == first["contents"]
    model, results = second["contents"][len(first["contents"]):]
    call_part = model["parts"][-1]
    assert call_part["functionCall"]["name"] == TOOL_NAME and call_part["thoughtSignature"] == SIGNATURE
    (reply,) = results["parts"]
    assert reply["functionResponse"]["name"] == TOOL_NAME and line in reply["functionResponse"]["response"]["content"]
    usage = whole.usage_metadata
    assert usage.prompt_token_count == _prompt_tokens(fresh_mock)  # both upstream calls
    assert usage.thoughts_token_count == 10  # 5 per upstream call

    fresh_mock.reset()
    chunks = list(client.models.generate_content_stream(model=COUNTED, contents=conversation, config=_config(fact)))
    assert len(chunks) >= 3
    assert "".join(c.text or "" for c in chunks) == whole.text
    for chunk in chunks:
        _no_retrieval_call(chunk)
    assert {c.response_id for c in chunks} == {chunks[0].response_id}
    assert [c.candidates[0].finish_reason for c in chunks][-1] == types.FinishReason.STOP
    assert all(c.candidates[0].finish_reason is None for c in chunks[:-1])
    assert chunks[-1].usage_metadata == usage  # the same two calls, summed
    assert len(_bodies(fresh_mock)) == 2

    # Every upstream call is counted, streamed or not.
    billed = usage.prompt_token_count - usage.cached_content_token_count  # per answer, both calls
    counted_before = before["models"].get(COUNTED, {}).get("input_tokens", 0)
    after = wait_for(lambda: (s := _stats(proxy))["retrieval_loop"]["retrievals"] >= before["retrieval_loop"][
        "retrievals"] + 2 and s["models"].get(COUNTED, {}).get("input_tokens", 0) >= counted_before + 2 * billed
                     and s, timeout=10, what="stats flushed")
    assert after["retrieval_loop"] == {k: v + 2 for k, v in before["retrieval_loop"].items()}
    assert after["models"][COUNTED]["input_tokens"] == counted_before + 2 * billed


def _stats(proxy) -> dict:
    return httpx.get(f"{proxy.url}/stats", timeout=10).json()


def _prompt_tokens(mock) -> int:
    """The prompt tokens the mock reported for each upstream call (body bytes / 4), summed."""
    return sum(max(1, len(r["body"].encode("latin-1")) // 4) for r in mock.requests()
               if ":" in r["path"].rsplit("/", 1)[-1])


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_a_retrieval_beside_the_clients_own_call_is_answered_on_the_next_request(proxy, fresh_mock, streamed):
    client = _client(proxy, f"gk-retrieval-mixed-{streamed}")
    conversation = _log_conversation(client, "mixed")
    fact, line = _fact("mixed", 200), _line("mixed", 200)
    fresh_mock.reset()

    config = _config(fact, "read_log")
    if streamed:
        chunks = list(client.models.generate_content_stream(model=MODEL, contents=conversation, config=config))
        for chunk in chunks:
            _no_retrieval_call(chunk)
        calls = [c.name for chunk in chunks for c in chunk.function_calls or ()]
        text = "".join(c.text or "" for c in chunks)
        turn = types.Content(role="model", parts=[p for c in chunks for p in c.candidates[0].content.parts or ()])
    else:
        answer = client.models.generate_content(model=MODEL, contents=conversation, config=config)
        _no_retrieval_call(answer)
        calls, text, turn = [c.name for c in answer.function_calls], answer.text, answer.candidates[0].content
    assert calls == ["read_log"] and text == LEAD  # the client's own call only
    (upstream_saw,) = _bodies(fresh_mock)  # no continuation: the client has a call to answer

    conversation += [turn, _log_result("mixed-2")]
    final = client.models.generate_content(model=MODEL, contents=conversation, config=_config(fact))
    assert final.text == f"Found: 200:{line}"  # from the retrieval result the proxy put in
    _, nxt = _bodies(fresh_mock)
    model, results = nxt["contents"][len(upstream_saw["contents"]):][:2]
    assert [p["functionCall"]["name"] for p in model["parts"] if "functionCall" in p] == [TOOL_NAME, "read_log"]
    assert [p["functionResponse"]["name"] for p in results["parts"]] == ["read_log", TOOL_NAME]
    assert line in results["parts"][1]["functionResponse"]["response"]["content"]


def test_a_key_the_store_cannot_answer_is_a_tool_error_the_model_reads(proxy, fresh_mock):
    client = _client(proxy, "gk-retrieval-miss")
    marker = "[headroom: 390 of 400 lines omitted; retrieve with key 0123456789abcdef]"
    result = types.Content(role="user", parts=[types.Part.from_function_response(
        name="read_log", response={"output": f"2026-03-04T10:00:01Z INFO start\n{marker}"})])
    conversation = [_ask("Read the service log"),
                    types.Content(role="model", parts=[types.Part.from_function_call(name="read_log", args={})]),
                    result]
    fact = _fact("miss", 5)
    answer = client.models.generate_content(model=MODEL, contents=conversation, config=_config(fact))
    assert answer.text == f"{LEAD}Not found: {fact}"  # an ordinary answer, not a failed request
    _, second = _bodies(fresh_mock)
    response = second["contents"][-1]["parts"][0]["functionResponse"]
    assert response["name"] == TOOL_NAME and list(response["response"]) == ["error"]
    assert "0123456789abcdef" in response["response"]["error"]


def _contents_span(raw: str) -> tuple[int, int]:
    """Where a body's ``contents`` array is, as the upstream got it."""
    start = raw.index('"contents":') + len('"contents":')
    _, end = json.JSONDecoder().raw_decode(raw, start)
    return start, end


def _span(raw: str, field: str) -> str:
    """A top-level field's value as the upstream got it (its exact text)."""
    start = raw.index(f'"{field}":') + len(field) + 3
    _, end = json.JSONDecoder().raw_decode(raw, start)
    return raw[start:end]


def _prefix_metric(proxy) -> float:
    text = httpx.get(f"{proxy.url}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(r"^headroom_prefix_changes_total\{[^}]*\} (\S+)$", text, re.M))


def test_a_15_turn_session_with_retrievals_keeps_every_prefix_byte_for_byte(proxy, fresh_mock):
    """Three logs; the model looks for lines of them, fetching from each marker in turn (a line
    of the third log takes three retrievals, the last round asked to answer without tools)."""
    client = _client(proxy, "gk-retrieval-session")
    # (what the client sends: a question, or the log the model asked for), the line sought, mixed, streamed
    turns: list[tuple[str, tuple[str, int] | None, bool, bool]] = [
        ("Read the service log", None, False, False),
        ("a", None, False, False),
        ("What about order 123?", ("a", 123), False, False),
        ("And order 250?", ("a", 250), False, True),
        ("Order 140, and read the log again", ("a", 140), True, False),
        ("b", ("a", 140), False, False),  # the retrieval beside the client's call is answered here
        ("Order 177 of the new log?", ("b", 177), False, True),
        ("Order 301?", ("b", 301), False, False),
        ("Read it one last time", None, False, True),
        ("c", None, False, True),
        ("Order 212?", ("c", 212), False, False),
        ("Back to the first log: order 180?", ("a", 180), False, True),
        ("Order 288?", ("c", 288), False, True),
        ("Order 220 of the second log?", ("b", 220), False, False),
        ("Thanks. What now?", None, False, False),
    ]
    history: list[types.Content] = []
    found = 0
    for i, (sent, sought, mixed, streamed) in enumerate(turns):
        history.append(_log_result(sent) if len(sent) == 1 else _ask(sent))
        config = _config(_fact(*sought) if sought else None, "read_log" if mixed else None)
        if streamed:
            chunks = list(client.models.generate_content_stream(model=MODEL, contents=history, config=config))
            for chunk in chunks:
                _no_retrieval_call(chunk)
            text = "".join(c.text or "" for c in chunks)
            parts = [p for c in chunks for p in c.candidates[0].content.parts or ()]
            history.append(types.Content(role="model", parts=parts))  # as the stream came, part by part
        else:
            answer = client.models.generate_content(model=MODEL, contents=history, config=config)
            _no_retrieval_call(answer)
            text = answer.text or ""
            history.append(answer.candidates[0].content)
        if sought and not mixed:
            assert "Found: " in text and _line(*sought) in text, f"turn {i}: {text!r}"
            found += 1
    assert found == 9

    raws = _raw_bodies(fresh_mock)
    bodies = [json.loads(raw) for raw in raws]
    retrievals = [p["functionResponse"] for c in bodies[-1]["contents"] for p in c["parts"]
                  if p.get("functionResponse", {}).get("name") == TOOL_NAME]
    continuations = len(raws) - len(turns)
    assert continuations >= 9  # every sought fact took at least one retrieval
    # Every retrieval the upstream ever got is still in its place: one per continuation, and the
    # one beside the client's call (answered on the next request).
    assert len(retrievals) == continuations + 1
    # A line of the third log takes a third retrieval: its continuation is asked to answer without tools.
    modes = [b.get("toolConfig", {}).get("functionCallingConfig", {}).get("mode") for b in bodies]
    assert modes.count("NONE") >= 1
    for i in range(1, len(raws)):
        before, after = raws[i - 1], raws[i]
        (b_start, b_end), (a_start, _) = _contents_span(before), _contents_span(after)
        # Every content the upstream got before comes again, byte for byte, in the same place.
        assert after[a_start:].startswith(before[b_start:b_end - 1]), f"upstream request {i}: the prefix changed"
        # And so do the tools (the retrieval tool last) and what comes before the conversation.
        assert before[:b_start] == after[:a_start] and _span(before, "tools") == _span(after, "tools"), i
    assert bodies[-1]["tools"][-1]["functionDeclarations"][0]["name"] == TOOL_NAME
    assert _prefix_metric(proxy) == 0
    assert "prefix change" not in proxy.output()


def test_with_the_tool_off_the_tools_go_as_sent_and_nothing_is_retrieved(start_proxy, fresh_mock):
    proxy = start_proxy("--no-cache", "--retrieval-tool", "off")
    client = _client(proxy, "gk-retrieval-off")
    conversation = _log_conversation(client, "off")
    fact = _fact("off", 123)
    fresh_mock.reset()
    answer = client.models.generate_content(model=MODEL, contents=conversation, config=_config(fact))
    assert answer.text == f"Not found: {fact}"
    (body,) = _bodies(fresh_mock)
    assert [d["name"] for t in body["tools"] for d in t["functionDeclarations"]] == ["read_log"]


@pytest.mark.parametrize("query", ["", "?alt=json"], ids=["no-alt", "alt-json"])
def test_a_stream_asked_as_one_json_array_never_gets_the_tool(proxy, fresh_mock, query):
    """``streamGenerateContent`` without ``alt=sse`` answers one JSON array of chunks, which the
    loop does not read: declared there, a retrieval call would reach the client. (No SDK asks
    for it, so a raw request.)"""
    salt = f"array{len(query)}"
    read_log = {"name": "read_log", "description": "Read the service log",
                "parameters": {"type": "OBJECT", "properties": {"limit": {"type": "INTEGER"}}}}
    body = {"contents": [{"role": "user", "parts": [{"text": "Read the service log"}]},
                         {"role": "model", "parts": [{"functionCall": {"name": "read_log", "args": {}}}]},
                         {"role": "user", "parts": [{"functionResponse": {"name": "read_log",
                                                                          "response": {"output": _log(salt)}}}]}],
            "tools": [{"functionDeclarations": [read_log]}]}
    fact, line = _fact(salt, 123), _line(salt, 123)
    headers = {"x-goog-api-key": f"gk-retrieval-{salt}", "x-mock-seek": fact}
    url = f"{proxy.url}/v1beta/models/{MODEL}:streamGenerateContent"
    fresh_mock.reset()

    answer = httpx.post(url + query, json=body, headers=headers, timeout=30)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
    chunks = answer.json()
    assert isinstance(chunks, list) and len(chunks) >= 2
    assert TOOL_NAME not in answer.text
    assert "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"]) == \
        f"Not found: {fact}"  # the model had no tool to get the line back with
    (sent,) = _bodies(fresh_mock)
    assert sent["tools"] == body["tools"]  # as the client sent them
    assert re.search(r"\[headroom:[^\]]*[0-9a-f]{16}", json.dumps(sent))  # still compressed

    # The same request streamed as SSE gets the tool, and the line back.
    fresh_mock.reset()
    streamed = httpx.post(url + "?alt=sse", json=body, headers=headers, timeout=30)
    assert streamed.status_code == 200 and TOOL_NAME not in streamed.text
    sse = [json.loads(event[len("data: "):]) for event in streamed.text.split("\r\n\r\n") if event]
    assert "".join(p.get("text", "") for c in sse for p in c["candidates"][0]["content"]["parts"]) == \
        f"{LEAD}Found: 123:{line}"
    first, _ = _bodies(fresh_mock)
    assert first["tools"][-1]["functionDeclarations"][0]["name"] == TOOL_NAME
