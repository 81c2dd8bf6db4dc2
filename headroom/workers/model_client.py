"""The HTTP worker's side of the model server: one lazy connection, many requests on it.

Every failure becomes ``ModelUnavailable(reason)`` and nothing else, so the caller has one
thing to catch and can fall back to the uncompressed text:

* "down"       cannot connect, or the connection broke (every call in flight on it fails at
               once; the next call reconnects, so a restarted server is picked up by itself)
* "loading"    the server is up but still loading the model
* "timeout"    no reply within ``timeout_s``, enforced here (a late reply is discarded)
* "overloaded" the server's queue is full
* "error"      anything else (bad request, engine failure, wrong token)
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from headroom.workers import frames

log = logging.getLogger("headroom.model_client")

REASONS = ("down", "loading", "timeout", "overloaded", "error")


class ModelUnavailable(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class CompressReply:
    texts: list[str]
    tokens_before: int
    tokens_after: int


class _Connection:
    """One socket and the task that reads replies off it and hands them to their callers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future] = {}
        self.broken = False
        self.reader_task = asyncio.get_running_loop().create_task(self._read(), name="model-client-reader")

    async def _read(self) -> None:
        detail = "connection closed by the model server"
        try:
            while True:
                message = await frames.read_frame(self.reader)
                if message is None:
                    break
                future = self.pending.pop(message.get("id"), None)  # type: ignore[arg-type]
                if future is not None and not future.done():
                    future.set_result(message)
                # else: a reply to a call that timed out, or to no call at all: dropped
        except asyncio.CancelledError:
            detail = "client closed"
        except Exception as exc:  # noqa: BLE001 - reset, EOF mid-frame, a bad frame: all "down"
            detail = f"connection lost: {exc!r}"
        finally:
            self.fail(detail)

    def fail(self, detail: str) -> None:
        """Mark the connection dead and fail every call in flight on it with "down"."""
        self.broken = True
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ModelUnavailable("down", detail))
        self.writer.close()

    async def send(self, data: bytes) -> None:
        if self.broken:
            raise ConnectionResetError("connection already closed")
        self.writer.write(data)  # the whole frame is buffered at once: frames never interleave
        await self.writer.drain()


class ModelClient:
    def __init__(self, url: str, token: str | None = None, connect_timeout_s: float = 2.0) -> None:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            self._unix_path: str | None = (parts.netloc + parts.path) or None
            if not self._unix_path:
                raise ValueError(f"no socket path in {url!r}")
        elif parts.scheme == "tcp":
            self._unix_path = None
            if not parts.hostname or not parts.port:
                raise ValueError(f"tcp URL needs host:port: {url!r}")
            self._host, self._port = parts.hostname, parts.port
        else:
            raise ValueError(f"model server URL must be unix:///path or tcp://host:port, not {url!r}")
        self.url = url
        self._token = token
        self._connect_timeout_s = connect_timeout_s
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)

    async def compress(self, texts: Sequence[str], rate: float, force_words: Sequence[str] = (),
                       timeout_s: float = 30.0) -> CompressReply:
        """Compressed ``texts`` (in order) and token totals, or ModelUnavailable."""
        message = {"op": "compress", "texts": list(texts), "rate": rate, "force_words": list(force_words),
                   "timeout_ms": max(1, int(timeout_s * 1000))}
        reply = await self._call(message, timeout_s)
        try:
            result = CompressReply(texts=list(reply["texts"]), tokens_before=int(reply["tokens_before"]),
                                   tokens_after=int(reply["tokens_after"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelUnavailable("error", f"malformed reply: {exc!r}") from None
        if len(result.texts) != len(texts) or not all(isinstance(text, str) for text in result.texts):
            raise ModelUnavailable("error", "reply does not match the request's texts")
        return result

    async def status(self, timeout_s: float = 2.0) -> dict[str, Any] | None:
        """The server's status reply, or None when it cannot be had."""
        try:
            reply = await self._call({"op": "status"}, timeout_s, check=False)
        except ModelUnavailable:
            return None
        return reply if "state" in reply else None  # e.g. refused for want of a token

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.reader_task.cancel()
            await asyncio.gather(conn.reader_task, return_exceptions=True)
            conn.fail("client closed")

    # -- internals --------------------------------------------------------------------------

    async def _call(self, message: dict[str, Any], timeout_s: float, check: bool = True) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        request_id = next(self._ids)
        try:
            data = frames.encode({"id": request_id, **message})
        except Exception as exc:  # noqa: BLE001 - too large, or not JSON-serialisable
            raise ModelUnavailable("error", f"cannot send the request: {exc}") from None
        try:
            conn = await self._connection(min(self._connect_timeout_s, timeout_s))
        except ModelUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the cause, the server is not there for us
            raise ModelUnavailable("down", repr(exc)) from None
        future = loop.create_future()
        conn.pending[request_id] = future

        async def exchange() -> dict[str, Any]:
            await conn.send(data)
            return await future

        try:  # the timeout covers a stuck send as well as a slow reply
            reply = await asyncio.wait_for(exchange(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise ModelUnavailable("timeout", f"no reply within {timeout_s:.3g} s") from None
        except ModelUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - a write on a dead socket
            conn.fail(f"send failed: {exc!r}")
            raise ModelUnavailable("down", repr(exc)) from None
        finally:
            conn.pending.pop(request_id, None)  # a late reply finds no one and is dropped
        return _check(reply) if check else reply

    async def _connection(self, timeout_s: float) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # used from a new event loop: nothing of the old one is usable
            self._loop, self._conn, self._connecting = loop, None, None
        if self._conn is not None and not self._conn.broken:
            return self._conn  # the common case: no await, so no one can break it under us
        return await asyncio.wait_for(self._reconnect(), timeout_s)

    async def _reconnect(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # concurrent first calls share one connection
            if self._conn is None or self._conn.broken:
                self._conn = await self._open()
            return self._conn

    async def _open(self) -> _Connection:
        if self._unix_path is not None:
            reader, writer = await asyncio.open_unix_connection(self._unix_path)
        else:
            reader, writer = await asyncio.open_connection(self._host, self._port)
        if not self._token:
            return _Connection(reader, writer)
        try:  # the hello is answered before anything else is sent on this connection
            writer.write(frames.encode({"id": 0, "op": "hello", "token": self._token}))
            await writer.drain()
            reply = await frames.read_frame(reader)
        except BaseException:
            writer.close()
            raise
        if reply is None or not reply.get("ok"):
            writer.close()
            detail = (reply or {}).get("error", "connection closed during hello")
            raise ModelUnavailable("error", f"model server refused the token: {detail}")
        return _Connection(reader, writer)


def _check(reply: dict[str, Any]) -> dict[str, Any]:
    if "error" not in reply:
        return reply
    reason = reply.get("reason")
    raise ModelUnavailable(reason if reason in REASONS and reason != "down" else "error", str(reply["error"]))
