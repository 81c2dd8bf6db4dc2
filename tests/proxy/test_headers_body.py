"""Which headers cross the proxy, how bodies are read, how errors look: pure functions, in process."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from headroom.formats import ANTHROPIC
from headroom.formats import CHAT as OPENAI
from headroom.formats import format_for_path as provider_for_path
from headroom.proxy.body import decoded_body, dumps, json_object
from headroom.proxy.errors import ProxyError
from headroom.proxy.headers import request_headers, response_headers
from headroom.proxy.request_id import new_request_id, request_id_for
from headroom.proxy.response_cache import CachedAnswer, policy, request_key


def test_request_headers_drop_hop_by_hop_and_recomputed_ones_keeping_order_and_spelling():
    sent = [("X-Api-Key", "k"), ("Connection", "keep-alive, X-Trace"), ("X-Trace", "t"), ("Host", "h"),
            ("Content-Length", "9"), ("Content-Encoding", "gzip"), ("anthropic-beta", "b1,b2"),
            ("Transfer-Encoding", "chunked"), ("Accept-Encoding", "br"), ("User-Agent", "claude-cli/2")]
    assert request_headers(sent) == [("X-Api-Key", "k"), ("anthropic-beta", "b1,b2"), ("User-Agent", "claude-cli/2"),
                                     ("accept-encoding", "gzip, deflate")]


def test_response_headers_keep_provider_headers_and_drop_connection_ones():
    got = [("request-id", "r"), ("content-length", "10"), ("keep-alive", "5"), ("set-cookie", "a=b"),
           ("anthropic-ratelimit-requests-remaining", "4"), ("content-encoding", "gzip")]
    assert response_headers(got) == [("request-id", "r"), ("set-cookie", "a=b"),
                                     ("anthropic-ratelimit-requests-remaining", "4")]


def test_decoded_body_undoes_gzip_and_deflate_within_the_limit():
    body = json.dumps({"text": "x" * 500}).encode()
    assert decoded_body(body, "", 1000) is body
    assert decoded_body(gzip.compress(body), "gzip", 1000) == body
    assert decoded_body(zlib.compress(body), " Deflate ", 1000) == body
    with pytest.raises(ProxyError) as too_big:
        decoded_body(gzip.compress(b"0" * 10_000_000), "gzip", 1 << 20)  # a small zip bomb stops at the limit
    assert too_big.value.status == 413 and "1 MiB" in too_big.value.message
    with pytest.raises(ProxyError) as unsupported:
        decoded_body(body, "br", 1000)
    assert unsupported.value.status == 415
    with pytest.raises(ProxyError) as broken:
        decoded_body(b"not gzip at all", "gzip", 1000)
    assert broken.value.status == 400


def test_json_object_accepts_only_objects():
    assert json_object(b'{"a": 1}') == {"a": 1}
    for bad in (b"[1, 2]", b"not json", b'"text"', b""):
        with pytest.raises(ProxyError) as err:
            json_object(bad)
        assert err.value.status == 400
    assert dumps({"t": "é/x"}) == '{"t":"é/x"}'.encode()  # unicode and slashes kept as they are


@pytest.mark.parametrize(("status", "anthropic_type", "openai_code"), [
    (400, "invalid_request_error", None), (401, "authentication_error", "invalid_api_key"),
    (413, "request_too_large", "request_too_large"), (429, "rate_limit_error", "rate_limit_exceeded"),
    (502, "api_error", "upstream_unreachable"), (503, "overloaded_error", "service_unavailable"),
    (504, "timeout_error", "upstream_timeout"), (418, "invalid_request_error", None), (599, "api_error", None),
])
def test_error_bodies_have_each_providers_native_shape(status, anthropic_type, openai_code):
    anthropic = json.loads(ANTHROPIC.error_body(status, "why"))
    assert anthropic == {"type": "error", "error": {"type": anthropic_type, "message": "why"}}
    openai = json.loads(OPENAI.error_body(status, "why"))
    assert set(openai["error"]) == {"message", "type", "param", "code"}
    assert openai["error"]["code"] == openai_code and openai["error"]["message"] == "why"
    assert json.loads(OPENAI.error_body(status, "why", "custom"))["error"]["code"] == "custom"


def test_stream_error_events_are_valid_sse_for_each_provider():
    event = ANTHROPIC.stream_error_event("broke")
    assert event.startswith(b"event: error\ndata: ") and event.endswith(b"\n\n")
    assert json.loads(event.split(b"data: ", 1)[1])["error"]["type"] == "api_error"
    chunk = OPENAI.stream_error_event("broke")
    assert json.loads(chunk[len(b"data: "):])["error"]["code"] == "stream_interrupted"


def test_provider_for_path_by_route_then_headers():
    assert provider_for_path("/v1/messages/count_tokens", {}) is ANTHROPIC
    assert provider_for_path("/chat/completions", {"x-api-key": "k"}) is OPENAI
    assert provider_for_path("/v1/models", {"anthropic-version": "2023-06-01"}) is ANTHROPIC
    assert provider_for_path("/v1/models", {"authorization": "Bearer k"}) is OPENAI


def test_cache_policy_and_key():
    assert (policy(True, "").lookup, policy(True, "").store) == (True, True)
    assert (policy(True, "No-Cache").lookup, policy(True, "no-cache").store) == (False, True)
    assert (policy(True, "no-store").lookup, policy(True, "no-store").store) == (False, False)
    assert policy(False, "").store is False and policy(True, "no-cache").label == "bypass"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "metadata": {"user_id": "u1"}}
    same = {"messages": [{"content": "hi", "role": "user"}], "model": "m", "user": "other"}
    assert request_key("/v1/messages", body) == request_key("/v1/messages", same)  # order, metadata, user ignored
    assert request_key("/v1/messages", body) != request_key("/v1/chat/completions", body)
    assert request_key("/v1/messages", body) != request_key("/v1/messages", {**body, "stream": True})
    answer = CachedAnswer("text/event-stream; charset=utf-8", b"event: x\ndata: {}\n\n")
    assert CachedAnswer.decode(answer.encode()) == answer and answer.is_stream


class _Request:
    def __init__(self, headers: dict) -> None:
        self.headers = headers


def test_request_ids_adopt_a_clean_client_id_and_are_unique_otherwise():
    assert request_id_for(_Request({"x-request-id": "trace-1.2:3"})) == "trace-1.2:3"
    made = {request_id_for(_Request({"x-request-id": "bad id\r\n"})) for _ in range(100)}
    assert len(made) == 100 and all(i.startswith("hr_") for i in made)
    assert new_request_id() != new_request_id()


def test_a_head_is_checked_in_the_request_path_only_where_the_strict_parser_did_not():
    from sanic import Request, Sanic
    from sanic.compat import Header

    from headroom.proxy.body import check_head
    from headroom.proxy.framing import StrictHttp
    from headroom.proxy.protocol import DeadlineHttpProtocol

    bad = Request(b"/v1/messages", Header([("x-api-key", "k")]), "1.1", "POST", None, Sanic("head_check"),
                  head=b"POST /v1/messages HTTP/1.1\r\nx-api-key : k")
    with pytest.raises(ProxyError) as refused:  # an ASGI server's stream (or none): checked here
        check_head(bad)
    assert refused.value.status == 400
    assert DeadlineHttpProtocol.HTTP_CLASS is StrictHttp  # Sanic's own server parses every head strictly,
    bad.stream = StrictHttp.__new__(StrictHttp)  # so a head it handed on is not read again
    check_head(bad)


def test_a_proxy_response_sends_the_head_sanic_would_send():
    """ProxyResponse skips Sanic's cleaning (CR, LF and NUL removed) for values that hold none
    of them: the bytes of every header, printable or not, are Sanic's own."""
    import itertools

    from sanic.response import HTTPResponse

    from headroom.proxy.response import ProxyResponse

    values = ["plain", "x\r\ninjected: 1", "nul\x00", "tab\there", "é ü", "bad\udcff", "", 42]
    for status, (name, value) in itertools.product((200, 204, 304), itertools.product(["X-A", "x-b\r\n"], values)):
        headers = [(name, value), ("content-type", "application/json")]
        expected = list(HTTPResponse(b"{}", status=status, headers=headers).processed_headers)
        assert list(ProxyResponse(b"{}", status=status, headers=headers).processed_headers) == expected
