"""Request smuggling: a front proxy and Headroom must never disagree about where a request ends.

Each attack is one write on a raw socket: a first request whose framing is disguised
(whitespace before a colon, an obs-folded line, a chunk size that is not plain hex) and,
where the disguise would matter, a complete second request hidden in its body. Headroom
must answer a native 400, close the connection (nothing after the refusal is parsed), and
forward nothing. Framing that is merely unusual but valid (an uppercase chunk size, a chunk
extension, pipelined requests) still works, byte for byte and in order.
"""

from __future__ import annotations

import json

import pytest

from headroom.proxy.body import MAX_HEADER_COUNT
from testkit.llm_requests import GOOD
from testkit.native_errors import assert_anthropic_error, assert_openai_error
from testkit.raw_http import converse

ANTHROPIC = b"x-api-key: k\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
OPENAI = b"authorization: Bearer k\r\ncontent-type: application/json\r\n"
ROUTES = [pytest.param("/v1/messages", ANTHROPIC, id="anthropic"),
          pytest.param("/v1/chat/completions", OPENAI, id="openai")]
BODY = json.dumps(GOOD).encode()
SMUGGLED_BODY = json.dumps({**GOOD, "messages": [{"role": "user", "content": "smuggled"}]}).encode()


def request(path: str, auth: bytes, framing: bytes, body: bytes, close: bool = False) -> bytes:
    """A request head written as given (``framing`` is raw header lines, each ending in CRLF)."""
    return (b"POST %s HTTP/1.1\r\nhost: proxy\r\n%s%s%s\r\n%s"
            % (path.encode(), auth, framing, b"connection: close\r\n" if close else b"", body))


def smuggled(path: str, auth: bytes) -> bytes:
    """The complete request an attacker hides inside a body."""
    return request(path, auth, b"content-length: %d\r\n" % len(SMUGGLED_BODY), SMUGGLED_BODY, close=True)


def chunked(data: bytes, size: bytes | None = None) -> bytes:
    return b"%s\r\n%s\r\n0\r\n\r\n" % (size if size is not None else b"%x" % len(data), data)


def assert_refused_and_closed(proxy, path: str, data: bytes, fresh_mock) -> None:
    """One 400 in the route's native shape, the connection closed after it, nothing forwarded."""
    talk = converse(proxy.url, data)
    assert talk.closed, f"connection left open after {talk.statuses}"
    assert len(talk.replies) == 1, talk.raw
    reply = talk.replies[0]
    check = assert_anthropic_error if path == "/v1/messages" else assert_openai_error
    check(reply.status, reply.body, 400)
    assert reply.headers.get("connection") == "close"
    assert fresh_mock.requests() == []


# --- disguised framing headers ----------------------------------------------------------------

TE_DISGUISES = {
    "space-before-colon": b"transfer-encoding : chunked\r\n",
    "tab-before-colon": b"transfer-encoding\t: chunked\r\n",
    "folded-into-the-previous-line": b"x-note: a\r\n transfer-encoding: chunked\r\n",
    "tab-folded-into-the-previous-line": b"x-note: a\r\n\ttransfer-encoding: chunked\r\n",
    "value-on-a-folded-line": b"transfer-encoding:\r\n chunked\r\n",
}


@pytest.mark.parametrize("path,auth", ROUTES)
@pytest.mark.parametrize("name", list(TE_DISGUISES))
def test_a_disguised_transfer_encoding_is_refused_and_the_connection_closed(still_alive, fresh_mock, path, auth, name):
    """The issue's reproduction: content-length 4 for Headroom, chunked for a front proxy that
    reads the bad line; the chunked data is a whole second request."""
    framing = b"content-length: 4\r\n" + TE_DISGUISES[name]
    data = request(path, auth, framing, chunked(smuggled(path, auth)))
    assert_refused_and_closed(still_alive, path, data, fresh_mock)


CL_DISGUISES = {
    "space-before-colon": b"content-length : %d\r\n",
    "tab-before-colon": b"content-length\t: %d\r\n",
    "folded-into-the-previous-line": b"x-note: a\r\n content-length: %d\r\n",
}


@pytest.mark.parametrize("path,auth", ROUTES)
@pytest.mark.parametrize("name", list(CL_DISGUISES))
def test_a_disguised_content_length_is_refused_and_the_connection_closed(still_alive, fresh_mock, path, auth, name):
    """The other way round: chunked for Headroom, a short content-length for a front proxy that
    reads the bad line and takes what follows it as a second request."""
    hidden = smuggled(path, auth)
    body = chunked(BODY) + hidden
    framing = CL_DISGUISES[name] % len(chunked(BODY)) + b"transfer-encoding: chunked\r\n"
    assert_refused_and_closed(still_alive, path, request(path, auth, framing, body), fresh_mock)


@pytest.mark.parametrize("path,auth", ROUTES)
@pytest.mark.parametrize("name", ["space", "tab"])
def test_whitespace_before_the_colon_of_any_header_is_refused(still_alive, fresh_mock, path, auth, name):
    """RFC 9112 §5.1: no whitespace between a field name and its colon, whatever the field."""
    gap = b" " if name == "space" else b"\t"
    framing = b"x-anything%s: 1\r\ncontent-length: %d\r\n" % (gap, len(BODY))
    assert_refused_and_closed(still_alive, path, request(path, auth, framing, BODY + smuggled(path, auth)), fresh_mock)


# --- chunk sizes ------------------------------------------------------------------------------

BAD_SIZES = {
    "0x-prefix": b"0x%x", "leading-space": b" %x", "trailing-space": b"%x ", "leading-tab": b"\t%x",
    "trailing-tab": b"%x\t", "plus-sign": b"+%x", "underscore": b"%x_0", "space-before-extension": b"%x ;a=b",
    "control-in-extension": b"%x;a\x01b", "bare-lf-in-extension": b"%x;a\nb", "empty": b"",
}


@pytest.mark.parametrize("path,auth", ROUTES)
@pytest.mark.parametrize("name", list(BAD_SIZES))
def test_a_chunk_size_not_plain_hex_is_refused_and_the_connection_closed(still_alive, fresh_mock, path, auth, name):
    size = BAD_SIZES[name] % len(BODY) if b"%" in BAD_SIZES[name] else BAD_SIZES[name]
    body = chunked(BODY, size) + smuggled(path, auth)
    data = request(path, auth, b"transfer-encoding: chunked\r\n", body)
    assert_refused_and_closed(still_alive, path, data, fresh_mock)


@pytest.mark.parametrize("size", [b"%X", b"000%x", b"%x;name=value", b'%x;a="q";b'])
def test_valid_chunk_sizes_and_extensions_are_forwarded_exactly(still_alive, fresh_mock, size):
    path, auth = "/v1/messages", ANTHROPIC
    body = chunked(BODY, size % len(BODY))
    talk = converse(still_alive.url, request(path, auth, b"transfer-encoding: chunked\r\n", body, close=True))
    assert talk.statuses == [200], talk.raw
    assert fresh_mock.last_body() == BODY and len(fresh_mock.requests()) == 1


# --- what already held, kept ------------------------------------------------------------------

CLASSIC = {
    "CL.TE": b"content-length: 4\r\ntransfer-encoding: chunked\r\n",
    "TE.CL": b"transfer-encoding: chunked\r\ncontent-length: 4\r\n",
    "two-content-lengths": b"content-length: 4\r\ncontent-length: 4\r\n",
    "two-transfer-encodings": b"transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
    "chunked-identity": b"transfer-encoding: chunked, identity\r\n",
    "identity-chunked": b"transfer-encoding: identity, chunked\r\n",
    "content-length-not-a-number": b"content-length: 0x4\r\n",
    "content-length-list": b"content-length: 4, 4\r\n",
    "content-length-non-ascii-digit": "content-length: \u0664\r\n".encode(),
}


@pytest.mark.parametrize("path,auth", ROUTES)
@pytest.mark.parametrize("name", list(CLASSIC))
def test_classic_smuggling_stays_refused_and_closed(still_alive, fresh_mock, path, auth, name):
    body = chunked(smuggled(path, auth))
    assert_refused_and_closed(still_alive, path, request(path, auth, CLASSIC[name], body), fresh_mock)


def test_pipelined_requests_are_answered_in_order_and_forwarded_exactly(still_alive, fresh_mock):
    first = request("/v1/messages", ANTHROPIC, b"content-length: %d\r\n" % len(BODY), BODY)
    second = request("/v1/chat/completions", OPENAI, b"transfer-encoding: chunked\r\n", chunked(SMUGGLED_BODY))
    third = smuggled("/v1/messages", ANTHROPIC)  # ends with connection: close
    talk = converse(still_alive.url, first + second + third)
    assert talk.statuses == [200, 200, 200] and talk.closed, talk.raw
    received = fresh_mock.requests()
    assert [r["path"] for r in received] == ["/v1/messages", "/v1/chat/completions", "/v1/messages"]
    assert [r["body"].encode("latin-1") for r in received] == [BODY, SMUGGLED_BODY, SMUGGLED_BODY]


def test_a_refused_request_ends_the_connection_even_after_a_good_one(still_alive, fresh_mock):
    """The bad head arrives pipelined behind a good request (parsed from the buffer, not from a
    fresh read): the good one is served, the bad one refused, the hidden third never parsed."""
    path, auth = "/v1/messages", ANTHROPIC
    good = request(path, auth, b"content-length: %d\r\n" % len(BODY), BODY)
    bad = request(path, auth, b"content-length: 4\r\ntransfer-encoding : chunked\r\n", chunked(smuggled(path, auth)))
    talk = converse(still_alive.url, good + bad)
    assert talk.statuses == [200, 400] and talk.closed, talk.raw
    assert talk.replies[1].headers.get("connection") == "close"
    assert [r["body"].encode("latin-1") for r in fresh_mock.requests()] == [BODY]


@pytest.mark.parametrize("name", ["too-many-fields", "oversized-head"])
def test_a_refused_head_over_the_limits_closes_the_connection(still_alive, fresh_mock, name):
    """A 431 is about the head too: what follows it is not parsed."""
    path, auth = "/v1/messages", ANTHROPIC
    extra = (b"".join(b"x-h%d: v\r\n" % i for i in range(MAX_HEADER_COUNT)) if name == "too-many-fields"
             else b"x-big: " + b"b" * 10_000 + b"\r\n")
    bad = request(path, auth, extra + b"content-length: %d\r\n" % len(BODY), BODY)
    talk = converse(still_alive.url, bad + smuggled(path, auth))
    assert talk.statuses == [431] and talk.closed, talk.raw
    assert talk.replies[0].headers.get("connection") == "close"
    assert fresh_mock.requests() == []
