"""``/dashboard`` in a real headless Chromium (Debian's ``chromium``), against a real proxy.

The page loads with no console output at all (Chromium's own console log on stderr, and the
page's record of script errors and CSP violations), its figures equal ``/stats``, and
screenshots (laptop and phone sizes) are produced. Skipped when Chromium is not installed,
unless ``HEADROOM_REQUIRE_CHROMIUM=1``. ``HEADROOM_DASHBOARD_PNG=FILE`` also copies the
laptop screenshot there (how ``docs/dashboard.png`` is made).
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from testkit.originals import service_log, store_original

ADMIN = "dash-admin-T0ken-4f2a"
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
REQUIRE_ENV = "HEADROOM_REQUIRE_CHROMIUM"
BIG = "\n".join(json.dumps({"id": i, "name": f"item {i}", "status": "ok", "value": i * 3}) for i in range(200))
ANTHROPIC = {"x-api-key": "k-dashboard", "anthropic-version": "2023-06-01"}


def _require_chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but chromium is not installed")
        pytest.skip("chromium not installed")
    return CHROMIUM


@pytest.fixture(scope="module")
def busy_proxy(start_proxy):
    """A proxy with the admin token set that has answered a few requests of each kind, and
    retrievals enough (through /v1/compress and /v1/retrieve, which are not requests) to back
    a tool off."""
    proxy = start_proxy("--no-cache", "--admin-token", ADMIN)
    keys = [store_original(proxy.url, ANTHROPIC["x-api-key"], service_log(f"dash{i}"), ADMIN) for i in range(10)]
    for key in keys[:3]:  # 3 of 10: past the default 0.2
        response = httpx.post(f"{proxy.url}/v1/retrieve", json={"key": key, "query": "ERROR"},
                              headers={**ANTHROPIC, "x-headroom-admin-token": ADMIN})
        assert response.status_code == 200, response.text
    body = {"model": "claude-sonnet-4-5", "max_tokens": 8,
            "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": BIG}]}]}
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        assert client.post("/v1/messages", json=body, headers=ANTHROPIC).status_code == 200
        assert client.post("/v1/messages", json={**body, "stream": True}, headers=ANTHROPIC).status_code == 200
        assert client.post("/v1/messages", json=body, headers={**ANTHROPIC, "x-mock-status": "500"}).status_code == 500
        cached = json.dumps({"prompt_tokens_details": {"cached_tokens": 1024}})
        oai = client.post("/v1/chat/completions", headers={"authorization": "Bearer k", "x-mock-usage": cached},
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi " * 600}]})
        assert oai.status_code == 200
    return proxy


def _stats(proxy) -> dict:
    return httpx.get(f"{proxy.url}/stats", headers={"x-headroom-admin-token": ADMIN}).json()


def _chromium(url: str, profile: Path, *args: str, window: str = "1280,1500") -> subprocess.CompletedProcess:
    command = [_require_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps", "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={window}",
               "--enable-logging=stderr", "--v=0", "--virtual-time-budget=4000", *args, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=90)


def _console(stderr: str) -> list[str]:
    """What the page wrote to the console (Chromium logs it to stderr as ``CONSOLE`` lines)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


class _Dom(html.parser.HTMLParser):
    """Attributes by element id, the body's attributes, the rows of each table body by its id
    (``rows``: the recent requests')."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict] = {}
        self.body: dict = {}
        self.tables: dict[str, list[dict]] = {}
        self._tbody: str | None = None
        self.texts: list[str] = []

    @property
    def rows(self) -> list[dict]:
        return self.tables.get("recent", [])

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.by_id[attrs["id"]] = attrs
        if tag == "body":
            self.body = attrs
        if tag == "tbody":
            self._tbody = attrs.get("id")
            self.tables.setdefault(self._tbody, [])
        elif tag == "tr" and self._tbody is not None:
            self.tables[self._tbody].append(attrs)

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._tbody = None

    def handle_data(self, data):
        self.texts.append(data)


def _value(dom: _Dom, element_id: str) -> float | None:
    raw = dom.by_id[element_id]["data-value"]
    return None if raw == "" else float(raw)


def _csp_hashes(page: str, tag: str) -> set[str]:
    return {f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'"
            for b in re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.S)}


def test_dashboard_needs_the_admin_token_and_allows_only_its_own_code(busy_proxy):
    url = f"{busy_proxy.url}/dashboard"
    denied = httpx.get(url)
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "admin_token_required"
    login = httpx.get(url, headers={"accept": "text/html"})
    assert login.status_code == 401 and 'name="token"' in login.text and "not the admin token" not in login.text
    wrong = httpx.get(url, params={"token": "nope"}, headers={"accept": "text/html"})
    assert wrong.status_code == 401 and "not the admin token" in wrong.text
    assert httpx.get(url, headers={"authorization": "Bearer nope"}).status_code == 401
    for headers, params in (({"x-headroom-admin-token": ADMIN}, {}), ({"authorization": f"Bearer {ADMIN}"}, {}),
                            ({}, {"token": ADMIN})):
        page = httpx.get(url, headers=headers, params=params)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert ADMIN not in page.text  # the page never carries the token back
    for response in (page, login):
        headers = response.headers
        assert headers["cache-control"] == "no-store" and headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer" and headers["x-content-type-options"] == "nosniff"
        csp = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
        assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
        assert "unsafe" not in headers["content-security-policy"]
        assert set(csp["style-src"].split()) == _csp_hashes(response.text, "style")
    csp_page = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert set(csp_page["script-src"].split()) == _csp_hashes(page.text, "script") != set()
    assert csp_page["connect-src"] == "'self'"
    # Nothing loaded from elsewhere: no external src/href at all.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)
    assert httpx.head(url, params={"token": ADMIN}).status_code == 200
    assert ADMIN not in busy_proxy.output()  # never logged, query string included


def test_dashboard_in_chromium_matches_stats(busy_proxy, tmp_path):
    _require_chromium()
    started = time.monotonic()
    run = _chromium(f"{busy_proxy.url}/dashboard?token={ADMIN}&interval=500", tmp_path / "profile", "--dump-dom")
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-2000:]
    assert _console(run.stderr) == [], "the page wrote to the console"
    dom = _Dom()
    dom.feed(run.stdout)
    assert int(dom.body["data-polls"]) >= 2, f"the page did not poll /stats: {run.stdout[:500]}"
    assert dom.body["data-errors"] == "0", "".join(dom.texts)
    assert ADMIN not in run.stdout

    stats = _stats(busy_proxy)  # nothing has been proxied since: the page saw these figures
    assert stats["total_requests"] == 4
    assert stats["usd"]["spent"] > 0 and stats["usd"]["saved"] > 0
    assert _value(dom, "usd-spent") == pytest.approx(stats["usd"]["spent"])
    assert _value(dom, "usd-saved") == pytest.approx(stats["usd"]["saved"])
    assert _value(dom, "tokens-before") == stats["tokens_before"] > _value(dom, "tokens-after") == stats["tokens_after"]
    assert _value(dom, "savings-percent") == stats["savings_percent"]
    assert _value(dom, "requests-total") == 4 and _value(dom, "errors-total") == stats["errors_total"] == 1
    for reason in ("rpm", "tpm", "budget"):
        assert _value(dom, f"limited-{reason}") == stats["rate_limited"].get(reason, 0)
    for q, value in stats["added_latency_ms"].items():
        if q.startswith("p"):
            assert _value(dom, f"added-{q}") == pytest.approx(value)
    share = dom.by_id["cache-read-share"]
    if share["data-source"] == "prompt_cache":  # /stats's own section, by provider
        rows = stats["prompt_cache"].values()
        read, total = sum(r["read_tokens"] for r in rows), sum(r["input_tokens"] for r in rows)
    else:  # derived from the models' usage
        models = stats["models"].values()
        read = sum(m["cache_read_tokens"] for m in models)
        total = sum(m["input_tokens"] + m["cache_read_tokens"] + m["cache_write_tokens"] for m in models)
    assert read == 1024 and _value(dom, "cache-read-share") == pytest.approx(read / total)
    assert _value(dom, "cache-read-tokens") == read
    if "prefix_changes" in stats:
        assert _value(dom, "prefix-changes") == stats["prefix_changes"] == 0
    retrievals = stats["retrievals"]
    assert retrievals["total"] == retrievals["by_tool"]["fetch_orders"]["ok"] == 3
    assert _value(dom, "retrievals-total") == 3
    assert _value(dom, "retrieved-tokens") == retrievals["retrieved_tokens"] > 0
    assert _value(dom, "tokens-saved-net") == stats["tokens_saved_net"] == (
        stats["tokens_before"] - stats["tokens_after"] - retrievals["retrieved_tokens"])
    assert [row["data-tool"] for row in dom.tables["backed-off"]] == ["fetch_orders"] == [
        b["tool"] for b in stats["backed_off"]["now"]]
    recent = stats["recent_requests"]
    assert [int(r["data-status"]) for r in dom.rows] == [r["status"] for r in recent]
    assert [float(r["data-tokens-saved"]) for r in dom.rows] == [r["tokens_saved"] for r in recent]
    assert [float(r["data-cost-usd"]) for r in dom.rows] == pytest.approx([r["cost_usd"] for r in recent])
    print(f"chromium --dump-dom: {elapsed:.1f} s")


def test_dashboard_without_the_token_asks_for_it(busy_proxy, tmp_path):
    """A browser without the token gets the 401 page with its form (and no figures)."""
    run = _chromium(f"{busy_proxy.url}/dashboard", tmp_path / "profile", "--dump-dom")
    assert run.returncode == 0 and 'name="token"' in run.stdout and "usd-spent" not in run.stdout
    # The 401 itself is the only thing Chromium may note; no CSP violation, no script error.
    assert [line for line in _console(run.stderr) if "401" not in line] == []


def test_dashboard_screenshots(busy_proxy, tmp_path):
    _require_chromium()
    shots = {}
    for name, window in (("laptop", "1280,1500"), ("phone", "390,2000")):
        started = time.monotonic()
        shot = tmp_path / f"dashboard-{name}.png"
        run = _chromium(f"{busy_proxy.url}/dashboard?token={ADMIN}&interval=500", tmp_path / f"profile-{name}",
                        f"--screenshot={shot}", window=window)
        assert run.returncode == 0, run.stderr[-2000:]
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (width, height) == tuple(map(int, window.split(","))) and len(data) > 20_000
        shots[name] = (shot, time.monotonic() - started)
    if target := os.environ.get("HEADROOM_DASHBOARD_PNG"):
        shutil.copyfile(shots["laptop"][0], target)
    print({name: f"{elapsed:.1f} s" for name, (_, elapsed) in shots.items()})
