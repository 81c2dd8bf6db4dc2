"""Secrets never leave the request: a sentinel API key, admin token and state secret are
sent through every kind of request two real proxies handle, and then searched for — in
plain text, any case, hex, URL-encoded, base64 at every alignment, and as unkeyed SHA-256 /
MD5 digests — in every key and value of the shared Redis (read by type, and as ``DUMP``),
both JSON-lines request logs (with and without ``--log-messages``), ``/metrics``, ``/stats``,
``/health``, and everything the proxies printed on stdout and stderr.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from pathlib import Path
from urllib.parse import quote

import pytest

from testkit.llm_requests import ANTHROPIC_VERSION, HTTP, anthropic_body, bulky_json, openai_body, retrieval_keys
from testkit.ports import free_port
from testkit.raw_http import raw_request, send_raw
from testkit.redis_dump import redis_dump
from testkit.services import stop
from testkit.waiting import wait_for

TOKEN = "hrSentinel" + secrets.token_hex(6)  # in every secret below, unique to this run
ANTHROPIC_KEY = f"sk-ant-api03-{TOKEN}-AnthropicKey"
OAUTH_TOKEN = f"sk-ant-oat01-{TOKEN}-OAuthToken"
OPENAI_KEY = f"sk-proj-{TOKEN}-OpenAIKey"
LIMITED_KEY = f"sk-ant-api03-{TOKEN}-LimitedKey"
RPM_KEY = f"sk-ant-api03-{TOKEN}-RpmKey"
ADMIN_TOKEN = f"admin-{TOKEN}-AdminToken"
STATE_SECRET = f"state-{TOKEN}-StateSecret"
SECRETS = (ANTHROPIC_KEY, OAUTH_TOKEN, OPENAI_KEY, LIMITED_KEY, RPM_KEY, ADMIN_TOKEN, STATE_SECRET)

ANTHROPIC = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": ANTHROPIC_VERSION}
OAUTH = {"authorization": f"Bearer {OAUTH_TOKEN}", "anthropic-version": ANTHROPIC_VERSION,
         "anthropic-beta": "oauth-2025-04-20"}
OPENAI = {"authorization": f"Bearer {OPENAI_KEY}"}
ADMIN = {"x-headroom-admin-token": ADMIN_TOKEN}


def forms(secret: str) -> set[bytes]:
    """Ways a secret could be written down, all lower-cased (blobs are searched lower-cased)."""
    raw = secret.encode()
    out = {raw, raw.hex().encode(), quote(secret, safe="").encode(), json.dumps(secret)[1:-1].encode(),
           hashlib.sha256(raw).hexdigest()[:16].encode(), hashlib.md5(raw).hexdigest()[:16].encode()}
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            out.add(encode(b"\0" * pad + raw)[4:-4])  # the part fixed by the secret alone
    return {form.lower() for form in out}


ALL_FORMS = {form: secret for secret in SECRETS for form in forms(secret)} | {TOKEN.lower().encode(): TOKEN}


def leaks(where: str, blob: bytes | str) -> list[str]:
    """Every secret form found in ``blob``, as readable findings."""
    data = (blob.encode("utf-8", "surrogateescape") if isinstance(blob, str) else blob).lower()
    return [f"{where}: {ALL_FORMS[form]!r} as {form[:24]!r}…" for form in ALL_FORMS if form in data]


def flatten(value) -> list[bytes]:
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, (int, float, str)):
        return [str(value).encode()]
    if isinstance(value, dict):
        return [b for pair in value.items() for item in pair for b in flatten(item)]
    return [b for item in value for b in flatten(item)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, module_redis, mock):
    """Two proxies on one Redis (databases 0 and 1): P1 with every feature (cache, limits, per-key budget,
    --log-messages, secrets as flags), P2 with plain logging, secrets from the environment
    and an unreachable OpenAI upstream."""
    from testkit import services

    logs = tmp_path_factory.mktemp("secret-scan")
    dead = f"http://127.0.0.1:{free_port()}"
    p1 = services.start_proxy(logs / "p1.out", mock.url, "--redis-url", module_redis.url,
                              "--log-file", str(logs / "p1.jsonl"),
                              "--log-messages", "--admin-token", ADMIN_TOKEN, "--state-secret", STATE_SECRET,
                              "--rpm", "25", "--tpm", "100000", "--budget", "5", "--budget-scope", "key")
    p2 = services.start_proxy(logs / "p2.out", mock.url, "--redis-url", db1(module_redis),
                              "--log-file", str(logs / "p2.jsonl"), "--openai-api-url", dead,
                              env={"HEADROOM_ADMIN_TOKEN": ADMIN_TOKEN, "HEADROOM_STATE_SECRET": STATE_SECRET})
    try:
        yield p1, p2, logs
    finally:
        stop(p1.proc)
        stop(p2.proc)


def db1(server) -> str:
    """P2's database on the same server: its limits stay apart from P1's."""
    return server.url.rsplit("/", 1)[0] + "/1"


def post(proxy, path: str, body: dict, headers: dict, **extra) -> object:
    return HTTP.post(f"{proxy.url}{path}", json=body, headers={**headers, **extra})


def llm_traffic(proxy, mock, path: str, make_body, headers: dict, label: str) -> list[int]:
    """Every kind of LLM request for one caller: new, cached, streamed (and replayed),
    upstream errors of several kinds, broken and erroring streams, compression with
    retrieval, pass-through, bad input. Returns the statuses seen."""
    statuses = []
    unreachable = label == "p2c"  # P2's OpenAI upstream
    for stream in (False, True):
        body = make_body(f"{label} hello {stream}", stream=stream)
        statuses.append(post(proxy, path, body, headers).status_code)
        # Served from the cache once the answer is stored (the books close behind the answer).
        wait_for(lambda body=body: unreachable or post(proxy, path, body, headers).headers.get("x-headroom-cache")
                 == "hit", what=f"{label}: a cache hit")
    for status in ("401", "429", "500", "529"):
        for stream in (False, True):
            body = make_body(f"{label} error {status}", stream=stream)
            statuses.append(post(proxy, path, body, headers, **{"x-mock-status": status}).status_code)
    for control in ("x-mock-break-after", "x-mock-stream-error-after"):
        statuses.append(post(proxy, path, make_body(f"{label} {control}", stream=True), headers,
                             **{control: "1"}).status_code)
    # Compression stores an original; retrieve it both ways; /v1/compress.
    response = post(proxy, path, make_body(f"{label} which orders are delayed?", tool_output=bulky_json(salt=label)),
                    headers, **{"cache-control": "no-store"})
    statuses.append(response.status_code)
    keys = retrieval_keys(mock.last()["body"]) if response.status_code == 200 else []
    assert keys or unreachable, (label, response.status_code)
    for key in keys:
        statuses.append(HTTP.get(f"{proxy.url}/v1/retrieve/{key}", headers={**headers, **ADMIN}).status_code)
        statuses.append(HTTP.post(f"{proxy.url}/v1/retrieve", json={"key": key},
                                  headers={**headers, **ADMIN}).status_code)
    compress_body = make_body(f"{label} compress", tool_output=bulky_json(salt=label + "c"))
    statuses.append(HTTP.post(f"{proxy.url}/v1/compress", json=compress_body, headers={**headers, **ADMIN}).status_code)
    statuses.append(HTTP.post(f"{proxy.url}/v1/compress", json=compress_body, headers=headers).status_code)  # 401
    statuses.append(HTTP.get(f"{proxy.url}/v1/retrieve/0123456789abcdef", headers={**headers, **ADMIN}).status_code)
    # Pass-through, and Headroom's own errors.
    statuses.append(HTTP.get(f"{proxy.url}/v1/models", headers=headers).status_code)
    statuses.append(HTTP.post(f"{proxy.url}/v1/messages/count_tokens", json=make_body("count"),
                              headers=headers).status_code)
    statuses.append(HTTP.post(f"{proxy.url}{path}", content=b"{not json", headers=headers).status_code)
    statuses.append(HTTP.get(f"{proxy.url}/v1/models/../../x", headers=headers).status_code)
    return statuses


def admin_traffic(proxy) -> None:
    for headers in (ADMIN, {"authorization": f"Bearer {ADMIN_TOKEN}"}):
        for path in ("/stats", "/metrics", "/docs/openapi.json"):
            assert HTTP.get(f"{proxy.url}{path}", headers=headers).status_code == 200
    wrong = ADMIN_TOKEN[::-1]
    for headers in ({"x-headroom-admin-token": wrong}, {"authorization": f"Bearer {wrong}"}, {}):
        for path in ("/stats", "/metrics", "/docs/openapi.json"):
            assert HTTP.get(f"{proxy.url}{path}", headers=headers).status_code == 401


def test_no_secret_anywhere(setup, module_redis, mock):
    p1, p2, logs = setup
    seen: dict[str, list[int]] = {}
    for proxy, name in ((p1, "p1"), (p2, "p2")):
        seen[f"{name} anthropic"] = llm_traffic(proxy, mock, "/v1/messages", anthropic_body, ANTHROPIC, f"{name}a")
        seen[f"{name} oauth"] = llm_traffic(proxy, mock, "/v1/messages", anthropic_body, OAUTH, f"{name}o")
        seen[f"{name} openai"] = llm_traffic(proxy, mock, "/v1/chat/completions", openai_body, OPENAI, f"{name}c")
        # The admin token on an LLM request and on a pass-through one (it is Headroom's, not the upstream's).
        post(proxy, "/v1/messages", anthropic_body("admin header"), {**ANTHROPIC, **ADMIN})
        HTTP.get(f"{proxy.url}/v1/models", headers={**ANTHROPIC, **ADMIN})
        admin_traffic(proxy)
    # P1's limits: the rate limit (requests and tokens) and the per-key budget refuse with 429.
    limited = {"x-api-key": LIMITED_KEY, "anthropic-version": ANTHROPIC_VERSION}
    for i in range(2):  # the first one empties the token bucket (a full bucket admits any request)
        tokens = post(p1, "/v1/messages", anthropic_body("x" * 500_000 + str(i)), limited)
    assert tokens.status_code == 429 and "input tokens" in tokens.text, tokens.text
    budget = post(p1, "/v1/messages", anthropic_body("budget", max_tokens=1_000_000), limited)
    assert budget.status_code == 429 and "budget" in budget.text, budget.text
    rpm = {"x-api-key": RPM_KEY, "anthropic-version": ANTHROPIC_VERSION}
    statuses = [post(p1, "/v1/messages", anthropic_body(f"rpm {i}"), rpm).status_code for i in range(27)]
    assert 429 in statuses
    # A request line and headers Sanic cannot parse, carrying the key.
    send_raw(p1.url, raw_request("GET", "host:1/v1/models", [("x-api-key", ANTHROPIC_KEY)]))
    send_raw(p1.url, raw_request("POST", "/v1/messages", [("x-api-key", ANTHROPIC_KEY), ("bad header", "x")], b"{}"))

    # Every path was taken: hits, upstream errors relayed, refusals, retrieval, compression.
    for label, got in seen.items():
        if label == "p2 openai":  # P2's OpenAI upstream is unreachable
            assert got.count(502) >= 10 and {200, 400, 401, 404}.issubset(set(got)), (label, got)
        else:
            assert {200, 400, 401, 404, 429, 500}.issubset(set(got)) and got.count(200) >= 8, (label, got)

    # Figures: /stats waits for the workers' flushes; read /metrics and /health too.
    findings: list[str] = []
    for proxy, name in ((p1, "p1"), (p2, "p2")):
        def complete(proxy=proxy, name=name):
            stats = HTTP.get(f"{proxy.url}/stats", headers=ADMIN).json()
            complete = stats["total_requests"] >= 55 and (name == "p2" or len(stats["rate_limited"]) == 3)
            return stats if complete and stats["cache"].get("hit") else None

        stats = wait_for(complete, what=f"{name} /stats with every request")
        assert stats["recent_requests"], stats
        findings += leaks(f"{name} /stats", json.dumps(stats))
        findings += leaks(f"{name} /metrics", HTTP.get(f"{proxy.url}/metrics", headers=ADMIN).content)
        findings += leaks(f"{name} /health", HTTP.get(f"{proxy.url}/health").content)
        findings += leaks(f"{name} /docs/openapi.json",
                          HTTP.get(f"{proxy.url}/docs/openapi.json", headers=ADMIN).content)
        stop(proxy.proc)  # flushes its log and its output
        findings += leaks(f"{name} stdout/stderr", proxy.output())
    for name in ("p1.jsonl", "p2.jsonl"):
        log = (logs / name).read_bytes()
        assert log.count(b"\n") >= 40, name
        findings += leaks(name, log)
    assert b'"messages"' in (logs / "p1.jsonl").read_bytes()  # --log-messages really logged content
    assert b'"messages"' not in (logs / "p2.jsonl").read_bytes()

    dump = redis_dump(module_redis.url) | redis_dump(db1(module_redis))
    assert any(key.startswith(b"hr:cache:") for key in dump) and any(key.startswith(b"hr:ccr:") for key in dump)
    assert any(key.startswith(b"hr:memo:") for key in dump) and any(key.startswith(b"hr:rl:") for key in dump)
    assert any(key.startswith(b"hr:budget:") for key in dump)
    for key, (value, dumped) in dump.items():
        findings += leaks(f"redis key {key[:60]!r}", key)
        for blob in flatten(value) + [dumped]:
            findings += leaks(f"redis value of {key[:60]!r}", blob)

    # Headroom's own secrets never reach the upstream either (the API keys must: they are
    # the upstream's credentials).
    for record in mock.requests():
        findings += leaks(f"upstream request {record['method']} {record['path']}",
                          json.dumps({k: v for k, v in record["headers"].items()
                                      if k not in ("x-api-key", "authorization")}) + record["body"])
    assert not findings, "\n".join(findings)


def test_scan_finds_a_planted_secret(tmp_path: Path):
    """The scan itself works: each encoding of each secret is found."""
    for secret in SECRETS:
        raw = secret.encode()
        for blob in (raw, raw.upper(), raw.hex().encode(), base64.b64encode(b"x" + raw), quote(secret).encode(),
                     hashlib.sha256(raw).hexdigest().encode()):
            assert leaks("planted", b"...." + blob + b"...."), (secret, blob)
    assert not leaks("clean", b"hr:cache:5d41402abc4b2a76b9719d911017c592:" + bytes(range(256)))
