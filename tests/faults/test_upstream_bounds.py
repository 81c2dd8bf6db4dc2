"""Upstream answers that would fill a worker's memory, against a real proxy (issue 19, item 3).

An answer Headroom reads whole may take ``--max-response-mb`` (8 MiB here) once decompressed:
a larger declared length, a longer body or a compression bomb gets a native 502, and the
worker's peak RSS stays within baseline + 2 × the limit while it is refused. An SSE event that
never ends is cut at :data:`headroom.proxy.sse.MAX_EVENT_BYTES` with the provider's error
event. A pass-through download that is not JSON streams through whatever its size, in
bounded memory. After each, the same proxy still serves a normal request.
"""

from __future__ import annotations

import threading

import httpx
import pytest

from headroom.proxy.sse import MAX_EVENT_BYTES, EventBuffer, EventTooLong
from testkit import processes
from testkit.waiting import wait_for

LIMIT_MB = 8
MiB = 1 << 20
ANTHROPIC = {"x-api-key": "sk-ant-bounds", "anthropic-version": "2023-06-01"}
OPENAI = {"authorization": "Bearer sk-bounds"}
MESSAGES = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


class PeakRss:
    """The highest RSS a process reaches while the block runs, sampled every few ms in a thread
    (bounded: the thread stops with the block)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = processes.rss_mb(pid) or 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, processes.rss_mb(self.pid) or 0.0)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, processes.rss_mb(self.pid) or 0.0)


@pytest.fixture(scope="module")
def bounded(start_proxy, mock):
    proxy = start_proxy("--max-response-mb", str(LIMIT_MB), "--no-cache", "--no-optimize")
    [worker] = wait_for(lambda: processes.live_workers(proxy.output()), what="the HTTP worker")
    return proxy, worker


def _serves(url: str) -> None:
    """A normal answer still comes back whole after a refused one."""
    normal = httpx.post(f"{url}/v1/messages", json=MESSAGES, headers=ANTHROPIC, timeout=30)
    assert normal.status_code == 200 and normal.json()["content"][0]["text"].startswith("mock reply")


def _baseline(url: str, worker: int) -> float:
    _serves(url)
    return processes.rss_mb(worker)


def _assert_native_502(response: httpx.Response, openai: bool = False) -> None:
    assert response.status_code == 502
    assert response.headers["x-headroom-error"] == "1"
    if openai:
        error = response.json()["error"]
        assert error["type"] == "api_error" and error["code"] == "upstream_response_too_large"
    else:
        body = response.json()
        assert body["type"] == "error" and body["error"]["type"] == "api_error"
        error = body["error"]
    assert "--max-response-mb" in error["message"]


def test_a_declared_length_over_the_limit_is_refused_before_it_is_read(bounded):
    proxy, worker = bounded
    baseline = _baseline(proxy.url, worker)
    with PeakRss(worker) as rss:  # claims 10 GB, sends 300 MiB if let, then hangs up
        refused = httpx.post(f"{proxy.url}/v1/messages", json=MESSAGES, timeout=60, headers={
            **ANTHROPIC, "x-mock-body-bytes": str(300 * MiB), "x-mock-declared-length": "10000000000"})
    _assert_native_502(refused)
    assert rss.peak <= baseline + 2 * LIMIT_MB, (baseline, rss.peak)
    _serves(proxy.url)


@pytest.mark.parametrize("path, body, headers, openai", [
    ("/v1/messages", MESSAGES, ANTHROPIC, False),
    ("/v1/chat/completions", CHAT, OPENAI, True),
], ids=["anthropic", "openai"])
def test_an_undeclared_body_over_the_limit_is_cut_off_as_it_arrives(bounded, path, body, headers, openai):
    proxy, worker = bounded
    baseline = _baseline(proxy.url, worker)
    with PeakRss(worker) as rss:
        refused = httpx.post(f"{proxy.url}{path}", json=body, timeout=60, headers={
            **headers, "x-mock-body-bytes": str(256 * MiB), "x-mock-declared-length": "none"})
    _assert_native_502(refused, openai)
    assert rss.peak <= baseline + 2 * LIMIT_MB, (baseline, rss.peak)
    _serves(proxy.url)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_a_compression_bomb_is_cut_off_in_bounded_memory(bounded, encoding):
    proxy, worker = bounded
    baseline = _baseline(proxy.url, worker)
    with PeakRss(worker) as rss:  # well under 1 MiB on the wire, 512 MiB once inflated
        refused = httpx.post(f"{proxy.url}/v1/messages", json=MESSAGES, timeout=60, headers={
            **ANTHROPIC, "x-mock-body-bytes": str(512 * MiB), "x-mock-body-encoding": encoding})
    _assert_native_502(refused)
    assert rss.peak <= baseline + 2 * LIMIT_MB, (baseline, rss.peak)
    _serves(proxy.url)


def test_a_compressed_answer_under_the_limit_is_relayed_whole(bounded):
    proxy, _ = bounded
    size = (LIMIT_MB - 1) * MiB
    answer = httpx.post(f"{proxy.url}/v1/messages", json=MESSAGES, timeout=60, headers={
        **ANTHROPIC, "x-mock-body-bytes": str(size), "x-mock-body-encoding": "gzip"})
    assert answer.status_code == 200 and "content-encoding" not in answer.headers
    assert len(answer.content) == size and answer.json() == {"mock": "padded"}


def test_a_json_passthrough_answer_over_the_limit_is_refused(bounded):
    proxy, _ = bounded
    refused = httpx.get(f"{proxy.url}/v1/models", timeout=60, headers={
        **OPENAI, "x-mock-body-bytes": str(64 * MiB), "x-mock-declared-length": "none"})
    _assert_native_502(refused, openai=True)
    _serves(proxy.url)


def test_a_large_passthrough_download_streams_through_in_bounded_memory(bounded):
    proxy, worker = bounded
    baseline = _baseline(proxy.url, worker)
    size = 160 * MiB  # 20 times the limit: a download is not an answer Headroom reads
    received = 0
    with PeakRss(worker) as rss:
        with httpx.stream("GET", f"{proxy.url}/v1/files/file-big/content", timeout=60, headers={
                **OPENAI, "x-mock-body-bytes": str(size), "x-mock-content-type": "application/octet-stream"}) as got:
            assert got.status_code == 200 and got.headers["content-length"] == str(size)
            for chunk in got.iter_raw():
                received += len(chunk)
    assert received == size
    assert rss.peak <= baseline + 2 * LIMIT_MB, (baseline, rss.peak)
    _serves(proxy.url)


def test_a_passthrough_download_cut_by_the_upstream_is_cut_for_the_client(bounded):
    proxy, _ = bounded
    with pytest.raises(httpx.RemoteProtocolError):  # never a short body that looks complete
        httpx.get(f"{proxy.url}/v1/files/file-cut/content", timeout=60, headers={
            **OPENAI, "x-mock-body-bytes": str(4 * MiB), "x-mock-declared-length": str(5 * MiB),
            "x-mock-content-type": "application/octet-stream"})
    _serves(proxy.url)


@pytest.mark.parametrize("path, body, headers, error_event", [
    ("/v1/messages", {**MESSAGES, "stream": True}, ANTHROPIC, b'event: error\ndata: {"type":"error"'),
    ("/v1/chat/completions", {**CHAT, "stream": True}, OPENAI, b'data: {"error":{'),
], ids=["anthropic", "openai"])
def test_an_endless_sse_line_ends_the_stream_with_the_error_event(bounded, path, body, headers, error_event):
    proxy, worker = bounded
    baseline = _baseline(proxy.url, worker)
    bound_mb = MAX_EVENT_BYTES / MiB
    with PeakRss(worker) as rss:
        got = httpx.post(f"{proxy.url}{path}", json=body, timeout=60, headers={
            **headers, "x-mock-sse-line-bytes": str(4 * MAX_EVENT_BYTES)})
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/event-stream")
    assert got.content.startswith(error_event) and got.content.endswith(b"\n\n")
    assert b"xxxx" not in got.content  # the unfinished line never reaches the client
    assert rss.peak <= baseline + 2 * bound_mb, (baseline, rss.peak)
    _serves(proxy.url)


def test_the_mock_bomb_is_small_on_the_wire(mock):
    """What the bomb tests rely on: 512 MiB of answer cost the mock well under 1 MiB to send."""
    with httpx.stream("POST", f"{mock.url}/v1/messages", json=MESSAGES, timeout=60, headers={
            **ANTHROPIC, "x-mock-body-bytes": str(512 * MiB), "x-mock-body-encoding": "gzip"}) as got:
        assert got.headers["content-encoding"] == "gzip"
        wire = sum(len(chunk) for chunk in got.iter_raw())
    assert wire < MiB


def test_the_event_buffer_holds_at_most_its_bound():
    framing = EventBuffer(limit=64)
    assert framing.push(b"data: 1\n\n" + b"data: " + b"x" * 100) == b"data: 1\n\n"  # completed events first
    with pytest.raises(EventTooLong):
        framing.push(b"x")
    framing = EventBuffer(limit=64)
    assert framing.push(b"data: " + b"y" * 50) == b""  # under the bound: held, waiting for its end
    assert framing.push(b"\n\n") == b"data: " + b"y" * 50 + b"\n\n"
