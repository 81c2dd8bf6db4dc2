"""ModelClient against scripted socket servers: id matching, timeouts, broken connections.

The server here is a raw frames endpoint whose replies each test scripts; the real model
server is exercised end to end in test_model_server.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time

import pytest

from headroom.workers import frames
from headroom.workers.model_client import CompressReply, ModelClient, ModelUnavailable

WAIT = 5.0


class ScriptedServer:
    """Calls ``handler(message, reply)`` for every frame; counts connections."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.connections = 0
        self.received: list[dict] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.dir = tempfile.mkdtemp(prefix="hr-mc-", dir="/tmp")
        self.path = os.path.join(self.dir, "s.sock")
        self.url = f"unix://{self.path}"

    async def __aenter__(self) -> ScriptedServer:
        self.server = await asyncio.start_unix_server(self._serve, path=self.path)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def _serve(self, reader, writer) -> None:
        self.connections += 1
        self.writers.append(writer)

        tasks: set[asyncio.Task] = set()

        async def reply(message: dict) -> None:
            writer.write(frames.encode(message))
            await writer.drain()

        try:
            while (message := await frames.read_frame(reader)) is not None:
                self.received.append(message)
                task = asyncio.create_task(self.handler(message, reply, writer))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass


def ok(message: dict) -> dict:
    return {"id": message["id"], "texts": [t.upper() for t in message["texts"]],
            "tokens_before": 10, "tokens_after": 4}


async def test_bad_url_is_a_programming_error():
    for url in ("http://x", "tcp://host-without-port", "unix://"):
        with pytest.raises(ValueError):
            ModelClient(url)


async def test_no_server_means_down_at_once():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once we leave: nothing listens there
    for url in ("unix:///tmp/hr-no-such-dir/x.sock", f"tcp://127.0.0.1:{port}"):
        client = ModelClient(url)
        started = time.monotonic()
        with pytest.raises(ModelUnavailable) as info:
            await client.compress(["a"], 0.5, timeout_s=WAIT)
        assert info.value.reason == "down"
        assert time.monotonic() - started < 1.0
        assert await client.status() is None
        await client.close()


async def test_replies_out_of_order_are_matched_by_id():
    first_arrived = asyncio.Event()
    release_first = asyncio.Event()

    async def handler(message, reply, writer):
        if message["texts"] == ["first"]:
            first_arrived.set()
            await release_first.wait()
        await reply(ok(message))
        if message["texts"] == ["second"]:
            release_first.set()

    async with ScriptedServer(handler) as server:
        client = ModelClient(server.url)
        first = asyncio.create_task(client.compress(["first"], 0.5, timeout_s=WAIT))
        await asyncio.wait_for(first_arrived.wait(), WAIT)
        second = await client.compress(["second"], 0.5, timeout_s=WAIT)
        assert second == CompressReply(["SECOND"], 10, 4)
        assert (await asyncio.wait_for(first, WAIT)).texts == ["FIRST"]
        assert server.connections == 1
        assert server.received[0]["timeout_ms"] == WAIT * 1000
        await client.close()


async def test_timeout_is_enforced_by_the_client_and_a_late_reply_is_dropped():
    async def handler(message, reply, writer):
        if message["texts"] == ["slow"]:
            await asyncio.sleep(0.3)  # the slow model answer is the behaviour under test
        await reply(ok(message))

    async with ScriptedServer(handler) as server:
        client = ModelClient(server.url)
        started = time.monotonic()
        with pytest.raises(ModelUnavailable) as info:
            await client.compress(["slow"], 0.5, timeout_s=0.05)
        assert info.value.reason == "timeout"
        assert 0.04 < time.monotonic() - started < 0.25
        await asyncio.sleep(0.35)  # kept: the late reply arrives now and finds no caller (nothing to observe)
        assert (await client.compress(["fast"], 0.5, timeout_s=WAIT)).texts == ["FAST"]
        assert server.connections == 1  # a timeout does not cost the connection
        await client.close()


async def test_broken_connection_fails_every_call_in_flight_then_reconnects():
    async def handler(message, reply, writer):
        if message["texts"] == ["die"]:
            await asyncio.sleep(0.05)  # the scripted server dies a moment into the call: the behaviour under test
            writer.close()
            return
        if message["texts"] == ["hang"]:
            return  # never answered: only the broken connection ends it
        await reply(ok(message))

    async with ScriptedServer(handler) as server:
        client = ModelClient(server.url)
        started = time.monotonic()
        calls = [client.compress([text], 0.5, timeout_s=WAIT) for text in ("hang", "hang", "die")]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert [getattr(r, "reason", r) for r in results] == ["down", "down", "down"]
        assert time.monotonic() - started < 1.0
        assert (await client.compress(["again"], 0.5, timeout_s=WAIT)).texts == ["AGAIN"]
        assert server.connections == 2
        await client.close()


@pytest.mark.parametrize("reason, expected", [
    ("loading", "loading"), ("overloaded", "overloaded"), ("timeout", "timeout"), ("error", "error"),
    ("unauthorized", "error"), ("down", "error"), (None, "error")])
async def test_server_error_reasons_map_to_client_reasons(reason, expected):
    async def handler(message, reply, writer):
        await reply({"id": message["id"], "error": "nope", "reason": reason})

    async with ScriptedServer(handler) as server:
        client = ModelClient(server.url)
        with pytest.raises(ModelUnavailable) as info:
            await client.compress(["a"], 0.5, timeout_s=WAIT)
        assert info.value.reason == expected and "nope" in str(info.value)
        await client.close()


async def test_malformed_replies_are_errors_not_crashes():
    async def handler(message, reply, writer):
        if message["texts"] == ["missing"]:
            await reply({"id": message["id"], "texts": ["x"]})
        else:
            await reply({"id": message["id"], "texts": ["x", "y"], "tokens_before": 1, "tokens_after": 1})

    async with ScriptedServer(handler) as server:
        client = ModelClient(server.url)
        for text in ("missing", "count"):
            with pytest.raises(ModelUnavailable) as info:
                await client.compress([text], 0.5, timeout_s=WAIT)
            assert info.value.reason == "error"
        await client.close()


async def test_garbage_from_the_server_is_down_and_the_next_call_reconnects():
    async def handler(message, reply, writer):
        if message["texts"] == ["garbage"]:
            writer.write(b"\x00\x00\x00\x03abc")
        else:
            await reply(ok(message))

    async with ScriptedServer(handler) as server:
        client = ModelClient(server.url)
        with pytest.raises(ModelUnavailable) as info:
            await client.compress(["garbage"], 0.5, timeout_s=WAIT)
        assert info.value.reason == "down"
        assert (await client.compress(["fine"], 0.5, timeout_s=WAIT)).texts == ["FINE"]
        await client.close()


async def test_concurrent_first_calls_share_one_connection_and_close_leaks_no_task():
    async def handler(message, reply, writer):
        await asyncio.sleep(0.01)  # a reply that takes a moment, so the first calls overlap
        await reply(ok(message) if message.get("op") == "compress" else {"id": message["id"], "state": "ready"})

    before = {t for t in asyncio.all_tasks() if t.get_name() == "model-client-reader"}
    async with ScriptedServer(handler) as server:
        client = ModelClient(server.url)
        replies = await asyncio.gather(*(client.compress([f"t{i}"], 0.5, timeout_s=WAIT) for i in range(20)))
        assert [r.texts for r in replies] == [[f"T{i}"] for i in range(20)]
        assert (await client.status())["state"] == "ready"
        assert server.connections == 1
        await client.close()
        await client.close()  # idempotent
    after = {t for t in asyncio.all_tasks() if t.get_name() == "model-client-reader"}
    assert after == before


async def test_unsendable_request_is_an_error_and_spares_the_connection():
    async def handler(message, reply, writer):
        await reply(ok(message))

    async with ScriptedServer(handler) as server:
        client = ModelClient(server.url)
        assert (await client.compress(["a"], 0.5, timeout_s=WAIT)).texts == ["A"]
        for texts in ([object()], ["x" * (frames.MAX_FRAME + 1)]):
            with pytest.raises(ModelUnavailable) as info:
                await client.compress(texts, 0.5, timeout_s=WAIT)
            assert info.value.reason == "error"
        assert (await client.compress(["b"], 0.5, timeout_s=WAIT)).texts == ["B"]
        assert server.connections == 1
        await client.close()
