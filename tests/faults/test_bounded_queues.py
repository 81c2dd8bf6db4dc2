"""Every queue and buffer of a worker has a bound; filled past it, it stays there."""

from __future__ import annotations

import asyncio
import socket

import httpx

from headroom.outcome import RequestOutcome
from headroom.proxy.stats import StatsBuffer, delta_of
from headroom.proxy.write_behind import WriteBehind
from headroom.state.keys import STATS_RECENT_LIMIT, STATS_SAMPLE_LIMIT
from testkit.waiting import async_wait_for, wait_for


class SlowStore:
    """Records the batches it is given; each write takes a while (a slow Redis)."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def settle_and_put(self, settles, puts) -> None:
        self.batches.append(len(settles) + len(puts))
        await asyncio.sleep(0.05)  # the slowness is the point: writes pile up behind it


async def test_the_write_behind_queue_never_holds_more_than_its_bound():
    store = SlowStore()
    writes = WriteBehind(store, delay=10.0)  # a long wait for company: only the bound makes it go
    most = 0
    for i in range(5 * WriteBehind.MAX_PENDING + 7):
        writes.add(None, ("caller", f"k{i}", b"v"))
        most = max(most, len(writes.settles) + len(writes.puts))
    assert most < WriteBehind.MAX_PENDING
    async def five_batches() -> bool:
        return len(store.batches) >= 5

    await async_wait_for(five_batches, timeout=5, what="the five full batches written")
    assert store.batches == [WriteBehind.MAX_PENDING] * 5  # written in full batches, none lost
    await writes.drain()  # ... and the rest on shutdown, without waiting 10 s
    assert sum(store.batches) == 5 * WriteBehind.MAX_PENDING + 7


def test_the_stats_buffer_keeps_bounded_samples_and_recent_requests():
    buffer = StatsBuffer()
    for i in range(STATS_SAMPLE_LIMIT + 500):
        buffer.add(delta_of(RequestOutcome(request_id=f"r{i}", timestamp=1.0, provider="openai",
                                           path="/v1/chat/completions", model="gpt-4o", status=200,
                                           latency_ms=float(i), overhead_ms=0.1)))
    assert len(buffer.recent) == STATS_RECENT_LIMIT
    assert all(len(series) <= STATS_SAMPLE_LIMIT for series in buffer.samples.values())
    assert buffer.samples["latency_ms"][-1] == STATS_SAMPLE_LIMIT + 499  # the most recent are kept
    assert buffer.counters["requests"] == STATS_SAMPLE_LIMIT + 500  # counters are exact


def test_connections_beyond_the_limit_get_a_503_and_are_closed(start_proxy, fresh_mock):
    proxy = start_proxy("--max-connections", "20")
    host, port = proxy.url.removeprefix("http://").split(":")
    held = [socket.create_connection((host, int(port))) for _ in range(20)]
    extra: socket.socket | None = None

    def refused() -> bytes | None:
        """A 21st connection, refused once the worker has taken the 20 held ones in (one not
        refused took a free slot: it is closed, freeing it, and the next try made)."""
        nonlocal extra
        extra = socket.create_connection((host, int(port)))
        extra.settimeout(1)
        try:
            answer = extra.recv(4096)
        except TimeoutError:
            answer = b""
        if not answer.startswith(b"HTTP/1.1 503 "):
            extra.close()
            return None
        return answer

    try:
        answer = wait_for(refused, timeout=15, interval=0.05, what="a connection beyond the 20 refused")
        assert b"retry-after: 1" in answer
        assert b'"too_many_connections"' in answer
        assert extra.recv(4096) == b""  # closed
        for sock in held[:5]:
            sock.close()
        body = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
        wait_for(lambda: httpx.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": "sk-ant-c"},
                                    timeout=10).status_code == 200, what="room again once five are closed")
    finally:
        for sock in held:
            sock.close()
