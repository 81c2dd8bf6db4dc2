"""The model server as a real process with the tiny real model, driven by ModelClient."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time

import pytest

from headroom.workers import frames
from headroom.workers.model_client import ModelClient, ModelUnavailable
from testkit import ROOT
from testkit.model_servers import prose, wait_ready, wait_status

WAIT = 10.0
SMALL = 64  # max_batch_tokens that admits one short window per pass: a slow, long queue
MANY = 500


def many() -> list[str]:
    """MANY one-window texts: about a second of one-window passes on the tiny model."""
    return [f"{prose(30)} ({i})" for i in range(MANY)]


async def warm(client: ModelClient) -> None:
    """Ready, and past the first call's one-off costs (token tables, first forward pass)."""
    await wait_ready(client)
    await client.compress([prose(30)], 0.5, timeout_s=WAIT)


async def expect_unavailable(call, reason: str) -> ModelUnavailable:
    with pytest.raises(ModelUnavailable) as info:
        await asyncio.wait_for(call, WAIT)
    assert info.value.reason == reason, info.value
    return info.value


async def test_unix_round_trip_status_loading_then_ready(start_server):
    server = start_server()
    path = server.options["socket_path"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    client = ModelClient(server.url)
    try:
        first = await client.status()
        assert first is not None and first["model"] == server.options["model"]
        status = await wait_ready(client)
        assert "loading" in status["seen_states"], "the server should answer while it loads"
        assert status["backend"] and status["device"] == "cpu" and status["queue_windows"] == 0
        assert status["max_batch_tokens"] == 1024  # the CPU default
        text = prose(300)
        reply = await client.compress([text, "Short one."], 0.5, timeout_s=WAIT)
        assert len(reply.texts) == 2 and reply.texts[0] and len(reply.texts[0]) < len(text)
        assert 0 < reply.tokens_after < reply.tokens_before
        status = await client.status()
        assert status["compressions"] == 1 and status["windows"] >= 2
    finally:
        await client.close()
    assert server.stop() == 0  # SIGTERM: a clean exit, socket file removed
    assert not await asyncio.to_thread(os.path.exists, path)


async def test_compress_while_loading_answers_loading(start_server):
    server = start_server()
    client = ModelClient(server.url)
    try:
        status = await client.status()
        if status["state"] == "loading":  # almost always: importing torch alone takes seconds
            await expect_unavailable(client.compress(["Hello there."], 0.5, timeout_s=WAIT), "loading")
        await wait_ready(client)
        await client.compress(["Hello there."], 0.5, timeout_s=WAIT)
    finally:
        await client.close()


async def test_failed_load_is_reported(start_server, tmp_path):
    server = start_server(model=str(tmp_path / "no-such-model"))
    client = ModelClient(server.url)
    try:
        status = await wait_status(client, lambda s: s["state"] != "loading", timeout=60)
        assert status["state"] == "failed" and status["error"]
        error = await expect_unavailable(client.compress(["Hello."], 0.5, timeout_s=WAIT), "error")
        assert "failed to load" in str(error)
    finally:
        await client.close()


async def test_tcp_requires_the_token(start_server):
    server = start_server(tcp=True, token="s3cret-token")
    good = ModelClient(server.url, token="s3cret-token")
    wrong = ModelClient(server.url, token="wrong")
    none = ModelClient(server.url)
    try:
        await wait_ready(good)
        reply = await good.compress([prose(100)], 0.5, timeout_s=WAIT)
        assert reply.tokens_after < reply.tokens_before
        error = await expect_unavailable(wrong.compress(["Hello."], 0.5, timeout_s=WAIT), "error")
        assert "token" in str(error)
        assert await wrong.status() is None
        await expect_unavailable(none.compress(["Hello."], 0.5, timeout_s=WAIT), "error")
        assert await ModelClient(server.url).status() is None
        # raw: anything before the hello is refused and the connection closed
        reader, writer = await asyncio.open_connection("127.0.0.1", server.options["port"])
        writer.write(frames.encode({"id": 7, "op": "status"}))
        assert (await asyncio.wait_for(frames.read_frame(reader), WAIT))["reason"] == "unauthorized"
        assert await asyncio.wait_for(frames.read_frame(reader), WAIT) is None
        writer.close()
    finally:
        for client in (good, wrong, none):
            await client.close()


async def test_requests_from_two_clients_share_batches(start_server):
    server = start_server(max_batch_tokens=2048)  # four full windows per pass
    long_client, a, b = (ModelClient(server.url) for _ in range(3))
    try:
        await wait_ready(long_client)
        long = asyncio.create_task(long_client.compress([prose(12_000)], 0.5, timeout_s=60))
        await wait_status(long_client, lambda s: s["batches"] >= 1)
        short = await asyncio.wait_for(asyncio.gather(
            a.compress([prose(40)], 0.5, timeout_s=WAIT), b.compress([prose(40)], 0.5, timeout_s=WAIT)), WAIT)
        assert all(reply.texts[0] for reply in short)
        await asyncio.wait_for(long, 60)
        status = await long_client.status()
        assert status["max_batch_requests"] >= 2, status
        assert status["batches"] < status["windows"]
    finally:
        for client in (long_client, a, b):
            await client.close()


async def test_short_request_overtakes_a_long_one(start_server):
    server = start_server(max_batch_tokens=1024)
    client = ModelClient(server.url)
    try:
        await wait_ready(client)
        long_started = time.monotonic()
        long = asyncio.create_task(client.compress([prose(20_000)], 0.5, timeout_s=60))
        await wait_status(client, lambda s: s["batches"] >= 1)
        started = time.monotonic()
        await client.compress([prose(40)], 0.5, timeout_s=WAIT)
        short_s = time.monotonic() - started
        assert not long.done(), "the short request should finish while the long one runs"
        await asyncio.wait_for(long, 60)
        print(f"\nshort request {short_s * 1000:.0f} ms during a long one of "
              f"{(time.monotonic() - long_started) * 1000:.0f} ms")
    finally:
        await client.close()


async def test_timeout_answers_timeout_and_the_server_drops_the_work(start_server):
    server = start_server(max_batch_tokens=SMALL)
    client = ModelClient(server.url)
    try:
        await warm(client)
        started = time.monotonic()
        await expect_unavailable(client.compress(many(), 0.5, timeout_s=0.4), "timeout")
        assert time.monotonic() - started < 1.0
        status = await wait_status(client, lambda s: s["drops"]["timeout"] >= 1 and s["queue_windows"] == 0)
        assert status["dropped_windows"] >= 1, status  # windows that never reached the model
        assert status["windows"] < MANY
        # the connection is still good: a late reply would have found no caller
        reply = await client.compress(["One more sentence here."], 0.5, timeout_s=WAIT)
        assert len(reply.texts) == 1
    finally:
        await client.close()


async def test_full_queue_answers_overloaded(start_server):
    server = start_server(max_batch_tokens=SMALL, max_queue_windows=4)
    big, other = ModelClient(server.url), ModelClient(server.url)
    try:
        await warm(big)
        long = asyncio.create_task(big.compress(many(), 0.5, timeout_s=60))
        await wait_status(big, lambda s: s["queue_windows"] > MANY // 2)
        started = time.monotonic()
        await expect_unavailable(other.compress(["Hello."], 0.5, timeout_s=WAIT), "overloaded")
        assert time.monotonic() - started < 1.0
        status = await other.status()
        assert status["drops"]["overloaded"] >= 1
        long.cancel()
        await asyncio.gather(long, return_exceptions=True)
    finally:
        await big.close()
        await other.close()


async def test_closed_connection_cancels_its_pending_work(start_server):
    server = start_server(max_batch_tokens=SMALL)
    leaving, watcher = ModelClient(server.url), ModelClient(server.url)
    try:
        await warm(watcher)
        call = asyncio.create_task(leaving.compress(many(), 0.5, timeout_s=60))
        await wait_status(watcher, lambda s: s["queue_windows"] > MANY // 2)
        await leaving.close()
        await expect_unavailable(call, "down")
        status = await wait_status(watcher, lambda s: s["drops"]["cancelled"] >= 1 and s["queue_windows"] == 0)
        assert status["dropped_windows"] > 10
    finally:
        await leaving.close()
        await watcher.close()


async def test_server_killed_then_restarted_client_reconnects(start_server):
    server = start_server()
    client = ModelClient(server.url)
    try:
        await wait_ready(client)
        await client.compress(["Before the crash."], 0.5, timeout_s=WAIT)
        in_flight = asyncio.create_task(client.compress([prose(30_000)], 0.5, timeout_s=60))
        await wait_status(client, lambda s: s["batches"] >= 2)
        server.proc.send_signal(signal.SIGKILL)
        started = time.monotonic()
        await expect_unavailable(in_flight, "down")
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        await expect_unavailable(client.compress(["While down."], 0.5, timeout_s=WAIT), "down")
        assert time.monotonic() - started < 1.0
        server.proc.wait(timeout=WAIT)
        server.start()  # same socket path: the stale file is replaced
        await wait_ready(client)
        reply = await client.compress(["After the restart."], 0.5, timeout_s=WAIT)
        assert len(reply.texts) == 1
    finally:
        await client.close()


async def test_second_server_on_a_live_socket_refuses_to_start(start_server):
    server = start_server()
    twin = await asyncio.create_subprocess_exec(
        *server.argv(), cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(twin.communicate(), 60)
    assert twin.returncode != 0 and b"already listening" in output
    client = ModelClient(server.url)
    try:
        assert await client.status() is not None  # the first one is untouched
    finally:
        await client.close()


async def test_protocol_errors_and_many_connections(start_server):
    server = start_server()
    path = server.options["socket_path"]
    clients = [ModelClient(server.url) for _ in range(10)]
    try:
        await wait_ready(clients[0])
        reader, writer = await asyncio.open_unix_connection(path)
        bad = [{"id": 1, "op": "nope"},
               {"id": 2, "op": "compress", "texts": ["a"], "rate": 5},
               {"id": 3, "op": "compress", "texts": "a", "rate": 0.5},
               {"id": 4, "op": "compress", "texts": ["a"], "rate": 0.5, "timeout_ms": -1}]
        for message in bad:
            writer.write(frames.encode(message))
        replies = [await asyncio.wait_for(frames.read_frame(reader), WAIT) for _ in bad]
        assert sorted(r["id"] for r in replies) == [1, 2, 3, 4]
        assert all(r["reason"] == "error" for r in replies)
        writer.write(b"\xff\xff\xff\xff")  # a 4 GiB frame: refused, connection closed
        reply = await asyncio.wait_for(frames.read_frame(reader), WAIT)
        assert reply["reason"] == "error" and "exceeds" in reply["error"]
        assert await asyncio.wait_for(frames.read_frame(reader), WAIT) is None
        writer.close()

        async def work(client: ModelClient, i: int) -> None:
            for j in range(3):
                reply = await client.compress([prose(20 + i + j)], 0.5, timeout_s=30)
                assert reply.texts[0]

        await asyncio.wait_for(asyncio.gather(*(work(c, i) for i, c in enumerate(clients))), 60)
        status = await clients[0].status()
        assert status["compressions"] == 30 and status["connections"] == 10
    finally:
        for client in clients:
            await client.close()


def test_the_default_threads_leave_a_core_to_the_short_lane():
    """Both lanes' passes draw on one intra-op pool; as wide as the machine, a long pass kept
    a 64-token one waiting 14x its idle time on 2 cores (load_tests/bench_llmlingua.py)."""
    from headroom.workers.model_server import default_threads

    assert [default_threads("cpu", cores) for cores in (1, 2, 4, 16)] == [1, 1, 3, 15]
    assert default_threads("cuda", 16) is None
