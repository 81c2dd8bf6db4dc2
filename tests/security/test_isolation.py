"""Caller isolation, attacked through a real proxy on a real Redis.

Caller A's cached answers, CCR originals (``/v1/retrieve``) and memoised blocks are out of
reach of every other caller B — including keys that differ from A's only in case, by a
trailing non-breaking space, by an extra or repeated credential header, and anonymous
callers — for each way a key travels: Anthropic ``x-api-key``, Anthropic OAuth
``Authorization: Bearer`` and OpenAI ``Authorization: Bearer``. What *is* the same caller is
what the upstream authenticates as the same key (``headroom.state.identity``): the key with
the spaces and tabs HTTP strips around a field value, or sent in the other header.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from redis import Redis

from headroom.state.identity import MalformedCredential, caller_hash, credential_of, secret_from_text
from testkit.llm_requests import ANTHROPIC_VERSION, HTTP, anthropic_body, bulky_json, openai_body, retrieval_keys
from testkit.raw_http import raw_request, send_raw
from testkit.services import stop
from testkit.waiting import wait_for

STATE_SECRET = "isolation-tests-state-secret"
SECRET = secret_from_text(STATE_SECRET)
A = "sk-ant-api03-IsolationKeyAbc123"


class Style:
    """One way a key travels: the route, the body shape, and the headers carrying the key."""

    def __init__(self, name: str, path: str, make_body, header: str, extra: dict[str, str]) -> None:
        self.name, self.path, self.make_body, self.header, self.extra = name, path, make_body, header, extra

    def headers(self, key: str | None) -> dict[str, str]:
        if key is None:
            return dict(self.extra)
        value = key if self.header == "x-api-key" else f"Bearer {key}"
        return {**self.extra, self.header: value}

    def __repr__(self) -> str:
        return self.name


STYLES = [
    Style("anthropic-x-api-key", "/v1/messages", anthropic_body, "x-api-key", {"anthropic-version": ANTHROPIC_VERSION}),
    Style("anthropic-oauth-bearer", "/v1/messages", anthropic_body, "authorization",
          {"anthropic-version": ANTHROPIC_VERSION, "anthropic-beta": "oauth-2025-04-20"}),
    Style("openai-bearer", "/v1/chat/completions", openai_body, "authorization", {}),
]

#: Keys that differ from A's, each a different caller: case, one byte, a trailing NBSP
#: (UTF-8 whitespace that HTTP does not strip, unlike spaces and tabs).
OTHER_KEYS = [A.lower(), A.upper(), A.swapcase(), A[:-1] + "4", A + "\u00a0"]


def other_callers(style: Style) -> list[list[tuple[str, str]]]:
    """Header lists of callers that are not A: other keys, A's key plus a second, different
    credential (whichever the upstream honours, it is not A alone), A's header twice with
    another value, and no credential at all."""
    def listed(headers: dict) -> list[tuple[str, str]]:
        return list(headers.items())

    out = [listed(style.headers(key)) for key in OTHER_KEYS]
    second = ("authorization", "Bearer sk-other") if style.header == "x-api-key" else ("x-api-key", "sk-other")
    out.append(listed(style.headers(A)) + [second])
    out.append(listed(style.headers(A)) + [(style.header, style.headers("sk-other")[style.header])])
    out.append(listed(style.headers(None)))
    return out


def same_callers(style: Style) -> list[list[tuple[str, str]]]:
    """A again, as the upstream would authenticate it: the key in the other header."""
    other = ("authorization", f"Bearer {A}") if style.header == "x-api-key" else ("x-api-key", A)
    return [list(style.extra.items()) + [other]]


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, module_redis, mock):
    from testkit import services

    log = tmp_path_factory.mktemp("isolation") / "proxy.out"
    handle = services.start_proxy(log, mock.url, "--redis-url", module_redis.url, "--state-secret", STATE_SECRET,
                                  "--no-rate-limit")
    yield handle
    stop(handle.proc)


@pytest.fixture(scope="module")
def redis_client(module_redis):
    client = Redis.from_url(module_redis.url)
    yield client
    client.close()


def encoded(headers) -> list[tuple[bytes, bytes]]:
    """Header pairs as UTF-8 bytes (httpx would refuse a non-ASCII ``str`` value)."""
    pairs = headers.items() if isinstance(headers, dict) else headers
    return [(name.encode(), value.encode()) for name, value in pairs]


def post(proxy, path: str, body: dict, headers, **extra):
    return HTTP.post(f"{proxy.url}{path}", json=body, headers=encoded(headers) + encoded(extra))


def sent_credentials(record: dict) -> dict[str, str]:
    return {k: v for k, v in record["headers"].items() if k in ("x-api-key", "authorization")}


# -- the response cache ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("style", STYLES, ids=repr)
def test_cached_answers_never_reach_another_caller(proxy, mock, style, stream):
    body = style.make_body(f"cache isolation {style.name} {stream}", stream=stream)
    first = post(proxy, style.path, body, style.headers(A))
    assert first.status_code == 200 and first.headers["x-headroom-cache"] == "miss", first.text
    wait_for(lambda: post(proxy, style.path, body, style.headers(A)).headers["x-headroom-cache"] == "hit",
             what="A's answer served from the cache")
    for headers in other_callers(style):
        mock.reset()
        response = post(proxy, style.path, body, headers)
        assert response.status_code == 200, response.text
        assert response.headers["x-headroom-cache"] in ("miss", "bypass"), (headers, response.headers)
        seen = mock.requests()
        assert len(seen) == 1, headers  # answered by the upstream, for this caller's credentials
        for name, value in sent_credentials(seen[0]).items():
            assert value in [v for k, v in headers if k == name], (headers, seen[0]["headers"])
    for headers in same_callers(style):
        response = post(proxy, style.path, body, headers)
        assert response.headers["x-headroom-cache"] == "hit", headers


def test_a_shared_placeholder_key_does_not_merge_callers(proxy, mock):
    """Clients that put a placeholder in ``x-api-key`` and their real key in ``Authorization``
    (which is what OpenAI authenticates) stay apart: the identity covers every credential."""
    body = openai_body("placeholder keys")
    alice = {"x-api-key": "placeholder", "authorization": "Bearer sk-alice-real"}
    bob = {"x-api-key": "placeholder", "authorization": "Bearer sk-bob-real"}
    post(proxy, "/v1/chat/completions", body, alice)
    wait_for(lambda: post(proxy, "/v1/chat/completions", body, alice).headers["x-headroom-cache"] == "hit",
             what="alice's answer cached")
    mock.reset()
    assert post(proxy, "/v1/chat/completions", body, bob).headers["x-headroom-cache"] == "miss"
    assert mock.last()["headers"]["authorization"] == "Bearer sk-bob-real"


def test_anonymous_requests_are_never_cached(proxy, mock):
    body = anthropic_body("anonymous callers cannot be told apart")
    for _ in range(3):
        mock.reset()
        response = post(proxy, "/v1/messages", body, {"anthropic-version": ANTHROPIC_VERSION})
        assert response.headers["x-headroom-cache"] == "bypass"
        assert len(mock.requests()) == 1


def test_the_query_is_part_of_the_cache_key(proxy, mock):
    style = STYLES[0]
    body = style.make_body("query strings change the request")
    post(proxy, style.path, body, style.headers(A))
    wait_for(lambda: post(proxy, style.path, body, style.headers(A)).headers["x-headroom-cache"] == "hit",
             what="a cached answer")
    mock.reset()
    response = HTTP.post(f"{proxy.url}{style.path}?beta=true", json=body, headers=style.headers(A))
    assert response.headers["x-headroom-cache"] == "miss" and mock.last()["query"] == "beta=true"


# -- CCR originals and memoised blocks ----------------------------------------------------------


def memo_callers(redis: Redis, text: str) -> set[str]:
    """The callers with a memo entry for this exact tool output."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    return {key.decode().split(":")[2] for key in redis.scan_iter(f"hr:memo:*:*.{digest}", count=1000)}


def retrieve(proxy, key: str, headers, how: str):
    headers = encoded(headers)
    if how == "get":
        return HTTP.get(f"{proxy.url}/v1/retrieve/{key}", headers=headers)
    return HTTP.post(f"{proxy.url}/v1/retrieve", json={"key": key}, headers=headers)


@pytest.mark.parametrize("style", STYLES, ids=repr)
def test_originals_and_memo_stay_with_their_caller(proxy, mock, redis_client, style):
    tool_output = bulky_json(salt=style.name)
    body = style.make_body("which orders are delayed?", tool_output=tool_output)
    mine = caller_hash(SECRET, A)
    assert post(proxy, style.path, body, style.headers(A), **{"cache-control": "no-store"}).status_code == 200
    keys = retrieval_keys(mock.last()["body"])
    assert keys, mock.last()["body"][:500]
    assert memo_callers(redis_client, tool_output) == {mine}
    for how in ("get", "post"):
        original = retrieve(proxy, keys[0], style.headers(A), how)
        assert original.status_code == 200 and original.json()["content"] == tool_output
        for headers in other_callers(style):
            anonymous = headers == list(style.headers(None).items())  # a 401: see test_anonymous_ccr.py
            assert retrieve(proxy, keys[0], headers, how).status_code == (401 if anonymous else 404), (how, headers)
        for headers in same_callers(style):
            assert retrieve(proxy, keys[0], headers, how).status_code == 200, (how, headers)

    # B sends the very same tool output: compressed for B by B's own pipeline run (a memo
    # entry and an original of B's own), never A's memoised block.
    other = A.swapcase()
    theirs = caller_hash(SECRET, other)
    assert post(proxy, style.path, body, style.headers(other), **{"cache-control": "no-store"}).status_code == 200
    assert memo_callers(redis_client, tool_output) == {mine, theirs}
    assert redis_client.exists(f"hr:ccr:{theirs}:{keys[0]}") and redis_client.exists(f"hr:ccr:{mine}:{keys[0]}")
    assert retrieve(proxy, keys[0], style.headers(other), "get").json()["content"] == tool_output


def test_compress_endpoint_memo_and_originals_are_per_caller(proxy, redis_client):
    style = STYLES[0]
    tool_output = bulky_json(salt="compress-endpoint")
    body = style.make_body("which orders are delayed?", tool_output=tool_output)
    answer = HTTP.post(f"{proxy.url}/v1/compress", json=body, headers=style.headers(A)).json()
    keys = answer["receipt"]["retrieval_keys"]
    assert keys and memo_callers(redis_client, tool_output) == {caller_hash(SECRET, A)}
    for headers in other_callers(style):
        anonymous = headers == list(style.headers(None).items())
        assert retrieve(proxy, keys[0], headers, "get").status_code == (401 if anonymous else 404), headers
    HTTP.post(f"{proxy.url}/v1/compress", json=body, headers=style.headers(A.upper()))
    assert memo_callers(redis_client, tool_output) == {caller_hash(SECRET, A), caller_hash(SECRET, A.upper())}


# -- what counts as the same key -----------------------------------------------------------------


def test_whitespace_around_a_key_is_not_part_of_it(proxy, mock):
    """HTTP strips spaces and tabs around a field value: the upstream authenticates ``A``
    whether or not they are there, and Headroom hashes exactly that."""
    body = json.dumps(anthropic_body("whitespace around the key")).encode()
    base = [("anthropic-version", ANTHROPIC_VERSION), ("content-type", "application/json")]
    assert send_raw(proxy.url, raw_request("POST", "/v1/messages", base + [("x-api-key", A)], body)).status == 200
    for value in (f"  {A}", f"{A} \t ", f"\t{A}\t"):
        def cached(value=value):
            reply = send_raw(proxy.url, raw_request("POST", "/v1/messages", base + [("x-api-key", value)], body))
            return reply.headers.get("x-headroom-cache") == "hit"

        wait_for(cached, what=f"{value!r} recognised as A")
    mock.reset()
    send_raw(proxy.url, raw_request("POST", "/v1/messages", base + [("x-api-key", f"{A}  ")],
                                    json.dumps(anthropic_body("forwarded as sent")).encode()))
    assert mock.last()["headers"]["x-api-key"] == A  # what the upstream authenticates


def test_keys_that_are_not_utf8_are_refused_not_mangled(proxy, mock):
    """Client libraries drop bytes that are not UTF-8 from header values (aiohttp sent ``sk-\\xff-K``
    on as ``sk--K``). Such a credential is refused up front, never hashed as one
    caller and forwarded as another, and never a 500."""
    body = json.dumps(anthropic_body("bad bytes")).encode()
    mock.reset()
    for name, value in ((b"x-api-key", b"sk-\xff\xfe-K"), (b"authorization", b"Bearer sk-\xff-K"),
                        (b"api-key", b"sk-\x80")):
        for path in ("/v1/messages", "/v1/chat/completions", "/v1/models"):
            reply = send_raw(proxy.url, raw_request("POST", path, [(name, value), ("content-type", "application/json")],
                                                    body))
            assert reply.status == 400 and b"UTF-8" in reply.body, (name, path, reply.raw[:300])
        for how in ("get", "post"):
            target = "/v1/retrieve/0123456789abcdef" if how == "get" else "/v1/retrieve"
            payload = b'{"key": "0123456789abcdef"}' if how == "post" else b""
            reply = send_raw(proxy.url, raw_request(how.upper(), target, [(name, value)], payload))
            assert reply.status == 400 and b"UTF-8" in reply.body, reply.raw[:300]
    assert mock.requests() == []
    # UTF-8 beyond ASCII is a key like any other, forwarded as sent.
    reply = send_raw(proxy.url, raw_request("POST", "/v1/messages", [("x-api-key", "sk-é-K".encode()),
                                                                     ("content-type", "application/json")], body))
    assert reply.status == 200 and mock.last()["headers"]["x-api-key"] == "sk-é-K"


# -- the rule itself ---------------------------------------------------------------------------------


class Headers:
    """A stand-in for Sanic's multidict of request headers."""

    def __init__(self, *pairs: tuple[str, str]) -> None:
        self.pairs = pairs

    def getall(self, name: str, default=()):
        return [value for key, value in self.pairs if key == name] or default


def test_credential_rule():
    assert credential_of(Headers()) == b""
    assert credential_of(Headers(("x-api-key", "K"))) == b"K"
    assert credential_of(Headers(("x-api-key", " \tK \t"))) == b"K"
    assert credential_of(Headers(("authorization", "Bearer K"))) == b"K"
    assert credential_of(Headers(("authorization", "bearer  K"))) == b"K"
    assert credential_of(Headers(("api-key", "K"))) == b"K"
    assert credential_of(Headers(("x-api-key", "K"), ("authorization", "Bearer K"))) == b"K"  # one key, twice
    assert credential_of(Headers(("authorization", "Basic dXNlcjpwYXNz"))) == b"Basic dXNlcjpwYXNz"
    assert credential_of(Headers(("authorization", "Bearer "))) == b""
    distinct = [Headers(("x-api-key", k)) for k in ("K", "k", "K\u00a0", "K K", "K  K")] + [
        Headers(("x-api-key", "K"), ("authorization", "Bearer L")),
        Headers(("x-api-key", "L"), ("authorization", "Bearer K")),
        Headers(("x-api-key", "K"), ("x-api-key", "L")),
        Headers(("x-api-key", "KL")),
        Headers(("authorization", "Basic K")),
    ]
    credentials = [credential_of(h) for h in distinct]
    assert len(set(credentials)) == len(credentials)
    assert len({caller_hash(SECRET, c) for c in credentials}) == len(credentials)
    assert caller_hash(SECRET, "K") == caller_hash(SECRET, b"K")  # str keys hash as their UTF-8
    with pytest.raises(MalformedCredential):
        credential_of(Headers(("x-api-key", "sk-\udcff")))  # how Sanic hands over the byte 0xff
