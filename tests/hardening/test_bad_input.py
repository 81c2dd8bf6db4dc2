"""Bad input: a clear 4xx in the provider's own shape, nothing forwarded, nothing crashes.

Every attack goes to a real proxy process; after each, the same worker process still
answers a good request (``still_alive``). Header attacks go over a raw socket: HTTP
clients refuse to send them.
"""

from __future__ import annotations

import gzip
import json

import httpx
import pytest

from headroom.proxy.body import MAX_HEADER_COUNT, MAX_JSON_DEPTH, MAX_JSON_INT
from testkit import raw_http
from testkit.llm_requests import ANTHROPIC_HEADERS, GOOD, HTTP, OPENAI_HEADERS
from testkit.native_errors import assert_anthropic_error, assert_openai_error
from testkit.raw_http import send_raw


def raw_request(method: str, path: str, headers: list[tuple[bytes | str, bytes | str]], body: bytes = b"") -> bytes:
    """A request head written byte for byte as given (``host`` and ``content-length`` added,
    nothing else: these tests count header fields)."""
    return raw_http.raw_request(method, path, headers, body, close=False)


ROUTES = [
    pytest.param("/v1/messages", ANTHROPIC_HEADERS, id="anthropic"),
    pytest.param("/v1/chat/completions", OPENAI_HEADERS, id="openai"),
]


def _post(proxy, path: str, headers: dict, raw: bytes) -> httpx.Response:
    return HTTP.post(f"{proxy.url}{path}", content=raw, headers=headers)


def _assert_native_400(response: httpx.Response, path: str, fragment: str = "") -> str:
    if path == "/v1/messages":
        message = assert_anthropic_error(response.status_code, response.content, 400)
    else:
        message = assert_openai_error(response.status_code, response.content, 400)
    assert response.headers["x-headroom-error"] == "1"
    assert fragment.lower() in message.lower(), message
    return message


def _with(value: bytes) -> bytes:
    """A good body with ``value`` as the user's content."""
    return b'{"model":"m","max_tokens":8,"messages":[{"role":"user","content":' + value + b"}]}"


def _nested(depth: int, objects: bool = False) -> bytes:
    """A body whose deepest array (or object) is at ``depth`` (the body itself is level 1)."""
    levels = depth - 2
    inner = b'{"k":' * levels + b"1" + b"}" * levels if objects else b"[" * levels + b"]" * levels
    return b'{"model":"m","max_tokens":8,"x":[' + inner + b'],"messages":[{"role":"user","content":"hi"}]}'


BAD_BODIES = {
    # not UTF-8
    "invalid-utf8-byte": (_with(b'"\xff\xfe"'), "UTF-8"),
    "utf8-encoded-surrogate": (_with(b'"\xed\xa0\x80"'), "UTF-8"),  # CESU-8: not UTF-8
    "overlong-utf8": (_with(b'"\xc0\xaf"'), "UTF-8"),
    "truncated-utf8": (_with(b'"\xe2\x82"'), "UTF-8"),
    "utf16-body": (json.dumps(GOOD).encode("utf-16"), "UTF-8"),
    "latin1-key": (b'{"mod\xe9l":"m","messages":[]}', "UTF-8"),
    # not JSON, or not one object
    "empty": (b"", "JSON"),
    "whitespace": (b"  \n ", "JSON"),
    "array": (b"[]", "object"),
    "string": (b'"hello"', "object"),
    "number": (b"42", "object"),
    "null": (b"null", "object"),
    "bom": (b"\xef\xbb\xbf" + json.dumps(GOOD).encode(), "JSON"),
    "trailing-garbage": (json.dumps(GOOD).encode() + b" }", "JSON"),
    "two-objects": (json.dumps(GOOD).encode() * 2, "JSON"),
    "nul-after": (json.dumps(GOOD).encode() + b"\x00", "JSON"),
    "raw-newline-in-string": (_with(b'"line\nbreak"'), "JSON"),
    "raw-nul-in-string": (_with(b'"a\x00b"'), "JSON"),
    "single-quotes": (b"{'model': 'm'}", "JSON"),
    "unterminated": (json.dumps(GOOD).encode()[:-5], "JSON"),
    # nesting
    "100k-deep-arrays": (_nested(100_000), f"deeper than {MAX_JSON_DEPTH}"),
    "100k-deep-objects": (_with(b'{"a":' * 100_000 + b"1" + b"}" * 100_000), f"deeper than {MAX_JSON_DEPTH}"),
    "100k-unclosed": (b'{"x":' + b"[" * 100_000, f"deeper than {MAX_JSON_DEPTH}"),
    "one-level-too-deep": (_nested(MAX_JSON_DEPTH + 1), f"deeper than {MAX_JSON_DEPTH}"),
    "one-level-too-deep-objects": (_nested(MAX_JSON_DEPTH + 1, objects=True), f"deeper than {MAX_JSON_DEPTH}"),
    # duplicate keys
    "duplicate-top-level": (b'{"model":"a","model":"b","max_tokens":8,"messages":[]}', "duplicate key 'model'"),
    "duplicate-max-tokens": (b'{"model":"m","max_tokens":1,"messages":[],"max_tokens":100000}', "duplicate"),
    "duplicate-nested": (_with(b'[{"type":"text","text":"a","text":"b"}]'), "duplicate key 'text'"),
    "duplicate-after-escape": (b'{"model":"m","mod\\u0065l":"n","messages":[]}', "duplicate key 'model'"),
    # numbers out of range
    "1e999": (b'{"model":"m","max_tokens":1e999,"messages":[]}', "out of range"),
    "-1e999": (b'{"model":"m","temperature":-1e999,"messages":[]}', "out of range"),
    "1E400-nested": (_with(b'[{"type":"text","text":"x","n":1E400}]'), "out of range"),
    "huge-integer": (b'{"model":"m","max_tokens":' + b"9" * 400 + b',"messages":[]}', "out of range"),
    "giant-integer": (b'{"model":"m","max_tokens":' + b"9" * 100_000 + b',"messages":[]}', "out of range"),
    "2**63": (b'{"model":"m","max_tokens":%d,"messages":[]}' % (MAX_JSON_INT + 1), "out of range"),
    "-2**63-1": (b'{"model":"m","seed":%d,"messages":[]}' % (-MAX_JSON_INT - 2), "out of range"),
    "NaN": (b'{"model":"m","temperature":NaN,"messages":[]}', "NaN"),
    "Infinity": (b'{"model":"m","temperature":Infinity,"messages":[]}', "Infinity"),
    "-Infinity": (b'{"model":"m","temperature":-Infinity,"messages":[]}', "Infinity"),
}


@pytest.mark.parametrize("path,headers", ROUTES)
@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_body_is_a_native_400_and_nothing_is_forwarded(still_alive, fresh_mock, path, headers, name):
    raw, fragment = BAD_BODIES[name]
    _assert_native_400(_post(still_alive, path, headers, raw), path, fragment)
    assert fresh_mock.requests() == []


@pytest.mark.parametrize("path,headers", ROUTES)
def test_bad_body_inside_gzip_is_a_native_400(still_alive, fresh_mock, path, headers):
    for raw in (BAD_BODIES["duplicate-top-level"][0], BAD_BODIES["100k-deep-arrays"][0], b"\xff"):
        response = _post(still_alive, path, {**headers, "content-encoding": "gzip"}, gzip.compress(raw))
        _assert_native_400(response, path)
    assert fresh_mock.requests() == []


@pytest.mark.parametrize("path,headers", ROUTES)
def test_the_limits_themselves_are_accepted_and_forwarded_byte_for_byte(still_alive, fresh_mock, path, headers):
    for raw in (_nested(MAX_JSON_DEPTH), _nested(MAX_JSON_DEPTH, objects=True),
                b'{"model":"m","max_tokens":%d,"seed":%d,"messages":[]}' % (MAX_JSON_INT, -MAX_JSON_INT - 1),
                b'{"model":"m","temperature":1.7976931348623157e308,"top_p":1e-999,"messages":[]}',
                b'{"model":"m","a":{"k":1},"b":{"k":2},"messages":[]}'):  # same key, different objects
        fresh_mock.reset()
        response = _post(still_alive, path, headers, raw)
        assert response.status_code == 200, response.text
        assert fresh_mock.last_body() == raw


def test_the_compress_endpoint_refuses_the_same_bodies(still_alive, fresh_mock):
    for name in ("duplicate-top-level", "100k-deep-arrays", "1e999", "invalid-utf8-byte"):
        response = _post(still_alive, "/v1/compress", ANTHROPIC_HEADERS, BAD_BODIES[name][0])
        assert response.status_code == 400, response.text
        assert response.json()["error"]  # a native shape (of the provider the path implies)


def test_a_huge_max_tokens_never_breaks_the_budget_arithmetic(start_proxy, fresh_mock):
    proxy = start_proxy("--budget", "1000")
    raw = b'{"model":"claude-sonnet-4-5","max_tokens":%d,"messages":[{"role":"user","content":"hi"}]}'
    response = HTTP.post(f"{proxy.url}/v1/messages", content=raw % MAX_JSON_INT, headers=ANTHROPIC_HEADERS)
    assert response.status_code in (200, 429), response.text  # refused by the budget, or passed on
    if response.status_code == 429:
        assert_anthropic_error(response.status_code, response.content, 429, "rate_limit_error")
    response = HTTP.post(f"{proxy.url}/v1/messages", content=raw % 10**400, headers=ANTHROPIC_HEADERS)
    assert_anthropic_error(response.status_code, response.content, 400)
    assert HTTP.post(f"{proxy.url}/v1/messages", json=GOOD, headers=ANTHROPIC_HEADERS).status_code == 200


# --- the request head, over a raw socket --------------------------------------------------

ANTHROPIC_RAW = [("x-api-key", "k"), ("anthropic-version", "2023-06-01"), ("content-type", "application/json")]
OPENAI_RAW = [("authorization", "Bearer k"), ("content-type", "application/json")]
RAW_ROUTES = [
    pytest.param("/v1/messages", ANTHROPIC_RAW, id="anthropic"),
    pytest.param("/v1/chat/completions", OPENAI_RAW, id="openai"),
]
BODY = json.dumps(GOOD).encode()

BAD_HEADS = {
    "bare-lf-in-value": [("x-trace", b"a\nx-injected: 1")],
    "bare-cr-in-value": [("x-trace", b"a\rb")],
    "nul-in-value": [("x-trace", b"a\x00b")],
    "control-char-in-value": [("x-trace", b"a\x01b")],
    "del-in-value": [("x-trace", b"a\x7fb")],
    "space-in-name": [("x trace", "1")],
    "separator-in-name": [("x(trace)", "1")],
    "space-before-colon": [("x-trace ", "1")],
    "non-ascii-name": [("x-tr\xc3\xa4ce".encode("latin-1"), "1")],
    "obs-fold": [("x-trace", b"a\r\n folded")],
    "empty-name": [(b"", "1")],
}


@pytest.mark.parametrize("path,headers", RAW_ROUTES)
@pytest.mark.parametrize("name", list(BAD_HEADS))
def test_malformed_header_is_a_native_400(still_alive, fresh_mock, path, headers, name):
    reply = send_raw(still_alive.url, raw_request("POST", path, headers + BAD_HEADS[name], BODY))
    check = assert_anthropic_error if path == "/v1/messages" else assert_openai_error
    check(reply.status, reply.body, 400)
    assert fresh_mock.requests() == []


@pytest.mark.parametrize("path,headers", RAW_ROUTES)
def test_a_line_without_colon_and_a_smuggling_attempt_are_native_400s(still_alive, fresh_mock, path, headers):
    check = assert_anthropic_error if path == "/v1/messages" else assert_openai_error
    no_colon = raw_request("POST", path, headers, BODY).replace(b"\r\n\r\n", b"\r\nno-colon-here\r\n\r\n", 1)
    both_lengths = raw_request("POST", path, headers + [("transfer-encoding", "chunked")], BODY)
    for data in (no_colon, both_lengths):
        reply = send_raw(still_alive.url, data)
        check(reply.status, reply.body, 400)
    assert fresh_mock.requests() == []


@pytest.mark.parametrize("path,headers", RAW_ROUTES)
def test_too_many_headers_is_a_native_431(still_alive, fresh_mock, path, headers):
    check = assert_anthropic_error if path == "/v1/messages" else assert_openai_error
    base = 2 + len(headers)  # host and content-length are headers too
    many = [(f"x-h{i}", "v") for i in range(MAX_HEADER_COUNT - base)]
    reply = send_raw(still_alive.url, raw_request("POST", path, headers + many, BODY))
    assert reply.status == 200, reply.body  # exactly at the limit
    reply = send_raw(still_alive.url, raw_request("POST", path, headers + many + [("x-one-more", "v")], BODY))
    assert str(MAX_HEADER_COUNT) in check(reply.status, reply.body, 431)
    tiny = [(f"x{i}", "") for i in range(900)]  # within Sanic's 8 KiB: only the count stops them
    reply = send_raw(still_alive.url, raw_request("POST", path, headers + tiny, BODY))
    assert str(MAX_HEADER_COUNT) in check(reply.status, reply.body, 431)
    assert len([r for r in fresh_mock.requests()]) == 1


@pytest.mark.parametrize("path,headers", RAW_ROUTES)
def test_oversized_header_is_a_native_431(still_alive, fresh_mock, path, headers):
    reply = send_raw(still_alive.url, raw_request("POST", path, headers + [("x-big", "b" * 10_000)], BODY))
    check = assert_anthropic_error if path == "/v1/messages" else assert_openai_error
    message = check(reply.status, reply.body, 431)
    assert "8192 bytes" in message and "body" not in message
    assert fresh_mock.requests() == []


def test_oversized_header_on_a_passthrough_route_keeps_the_callers_shape(still_alive, fresh_mock):
    """The head was never parsed; the bytes received still show an Anthropic client."""
    data = raw_request("GET", "/v1/models", ANTHROPIC_RAW + [("x-big", "b" * 20_000)])
    reply = send_raw(still_alive.url, data)
    assert_anthropic_error(reply.status, reply.body, 431)
    reply = send_raw(still_alive.url, raw_request("GET", "/v1/models", OPENAI_RAW + [("x-big", "b" * 20_000)]))
    assert_openai_error(reply.status, reply.body, 431)


@pytest.mark.parametrize("path,headers", RAW_ROUTES)
def test_overlong_url_is_a_native_414(still_alive, fresh_mock, path, headers):
    reply = send_raw(still_alive.url, raw_request("POST", path + "?q=" + "a" * 10_000, headers, BODY))
    check = assert_anthropic_error if path == "/v1/messages" else assert_openai_error
    assert "URL" in check(reply.status, reply.body, 414)
    reply = send_raw(still_alive.url, raw_request("POST", path + "?q=" + "a" * 6_000, headers, BODY))
    assert reply.status == 200  # long, but within the head's limit
    assert fresh_mock.last()["query"] == "q=" + "a" * 6_000


@pytest.mark.parametrize("path,headers", RAW_ROUTES)
def test_non_ascii_url_is_a_native_400(still_alive, fresh_mock, path, headers):
    reply = send_raw(still_alive.url, raw_request("POST", path, headers, BODY).replace(
        path.encode(), path.encode() + "?q=\u00e9".encode(), 1))
    check = assert_anthropic_error if path == "/v1/messages" else assert_openai_error
    check(reply.status, reply.body, 400)


@pytest.mark.parametrize("path,headers", RAW_ROUTES)
def test_control_characters_in_the_url_are_a_native_400(still_alive, fresh_mock, path, headers):
    check = assert_anthropic_error if path == "/v1/messages" else assert_openai_error
    for bad in (b"?q=a\nx-injected:%201", b"?q=a\rb", b"?q=\x00", b"?q=\x1b[31m"):
        data = raw_request("POST", path, headers, BODY).replace(path.encode(), path.encode() + bad, 1)
        reply = send_raw(still_alive.url, data)
        check(reply.status, reply.body, 400)
    assert fresh_mock.requests() == []


def test_utf8_header_values_pass_through_exactly_and_other_bytes_are_a_native_400(still_alive, fresh_mock):
    """A UTF-8 value reaches the upstream as sent. Other high bytes (latin-1 "obs-text") would
    not: the upstream client would send an empty value. Refused rather than changed."""
    headers = ANTHROPIC_RAW + [("x-note", "caf\u00e9 \u2603 \U0001f680".encode())]
    reply = send_raw(still_alive.url, raw_request("POST", "/v1/messages", headers, BODY))
    assert reply.status == 200, reply.body
    assert fresh_mock.last()["headers"]["x-note"] == "caf\u00e9 \u2603 \U0001f680"
    for value in (b"\xff\xfe", "caf\u00e9".encode("latin-1"), b"\xed\xa0\x80"):
        reply = send_raw(still_alive.url, raw_request("POST", "/v1/messages", ANTHROPIC_RAW + [("x-raw", value)], BODY))
        assert "UTF-8" in assert_anthropic_error(reply.status, reply.body, 400)
    assert len(fresh_mock.requests()) == 1


def test_garbage_instead_of_http_gets_an_answer_or_a_close(still_alive):
    for data in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",  # a TLS hello
                 b"GET\r\n\r\n", b"POST /v1/messages HTTP/9.9\r\nhost: x\r\n\r\n", b"\r\n\r\n"):
        reply = send_raw(still_alive.url, data)
        assert reply.status in (0, 400), reply  # 0: the connection was closed without an answer
