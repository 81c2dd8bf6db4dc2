"""The LLMLingua-2 model server: one process holds the model and serves every HTTP worker.

Why a separate process: the model costs hundreds of MB and 5-13 s of CPU per long call; run
inside each HTTP worker it blocked requests, and a thread pool in front of a concurrency-1
lock leaked threads and timed out by the thousand. Here the model lives once, windows from
concurrent requests are batched (``batcher.Batcher``), and workers talk to it over a local
socket (``frames``), which, unlike a multiprocessing.Queue, survives either side dying.

The server listens AT ONCE and loads the model in a background thread, so clients get a
quick "loading" answer (and fall back) instead of connection errors during a slow load.

Start it with ``headroom model-server`` (:mod:`headroom.cli`), or in code with
``serve_model(ModelServerOptions(...))`` (blocking until SIGTERM/SIGINT).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from headroom.observability import metrics
from headroom.workers import frames
from headroom.workers.batcher import Batcher, BatchReport, Closed, Expired, Overloaded

log = logging.getLogger("headroom.model_server")

_HELLO_TIMEOUT_S = 10.0
_DEFAULT_TIMEOUT_MS = 30_000


@dataclass
class ModelServerOptions:
    model: str  # model name or local folder, passed to headroom.models.loader.load_lingua
    device: str = "auto"
    backend: str = "auto"
    socket_path: str | None = None  # Unix socket, created 0600; its folder should be private
    host: str | None = None  # TCP, used when socket_path is None; default 127.0.0.1
    port: int | None = None
    token: str | None = None  # required in a hello frame on TCP when set
    threads: int | None = None  # intra-op threads for the model (None: default_threads)
    # Longest window x windows per forward pass. None: 1024 on CPU, where a pass is not
    # interruptible and a bigger one only makes later requests wait (a 64-token request
    # behind a 4,000-token one, real-size model: ~25 s at 8192, ~2-4 s at 1024, while the
    # long one took as long either way); 8192 on a GPU, where batching pays.
    max_batch_tokens: int | None = None
    max_queue_windows: int = 256  # beyond this, compress answers "overloaded" at once
    max_batch_windows: int = 64
    max_timeout_ms: int = 600_000  # a client's timeout_ms is capped at this


class ModelServer:
    def __init__(self, options: ModelServerOptions,
                 loader: Callable[[ModelServerOptions], Any] | None = None) -> None:
        if options.socket_path is None and options.port is None:
            raise ValueError("ModelServerOptions needs socket_path or port")
        self.options = options
        self.state = "loading"
        self.error: str | None = None
        self.batcher: Batcher | None = None
        self.backend = options.backend
        self.device = options.device
        self.address = ""
        self.max_batch_tokens = options.max_batch_tokens
        self._loader = loader or _load_lingua
        self._started = time.monotonic()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None
        self._socket_inode: int | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Listen, load in the background, serve until ``stop`` is set, then close cleanly."""
        await self._listen()
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._load, args=(loop,), name="lingua-loader", daemon=True).start()
        try:
            await stop.wait()
        finally:
            await self._close()

    async def _listen(self) -> None:
        options = self.options
        if options.socket_path is not None:
            path = options.socket_path
            _prepare_socket_path(path)
            old_umask = os.umask(0o177)  # the socket is born 0600: no window where others may connect
            try:
                self._server = await asyncio.start_unix_server(self._handle, path=path)
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o600)
            self._socket_inode = os.stat(path).st_ino
            self.address = f"unix://{path}"
        else:
            host = options.host or "127.0.0.1"
            self._server = await asyncio.start_server(self._handle, host=host, port=options.port)
            port = self._server.sockets[0].getsockname()[1]
            self.address = f"tcp://{host}:{port}"
            if not options.token and host not in ("127.0.0.1", "::1", "localhost"):
                log.warning("model server on %s without a token: anyone who can reach it may use it", host)
        log.info("model server listening on %s; loading %s", self.address, options.model)

    def _load(self, loop: asyncio.AbstractEventLoop) -> None:
        """Runs in a thread: a slow or failing load never stops the server answering."""
        started = time.monotonic()
        try:
            engine = self._loader(self.options)
        except BaseException as exc:
            log.exception("loading %s failed", self.options.model)
            outcome: tuple[Any, BaseException | None] = (None, exc)
        else:
            log.info("loaded %s in %.1f s", self.options.model, time.monotonic() - started)
            outcome = (engine, None)
        try:
            loop.call_soon_threadsafe(self._loaded, *outcome)
        except RuntimeError:
            pass  # the loop closed while we were loading: shutting down

    def _loaded(self, engine: Any, exc: BaseException | None) -> None:
        if exc is not None:
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            return
        backend = getattr(engine, "backend", None)  # Lingua2.backend: .name "torch"|"onnx"|..., .device
        self.backend = str(getattr(backend, "name", self.backend))
        self.device = str(getattr(backend, "device", self.device))
        options = self.options
        self.max_batch_tokens = options.max_batch_tokens or (1024 if self.device == "cpu" else 8192)
        self.batcher = Batcher(engine, max_batch_tokens=self.max_batch_tokens,
                               max_queue_windows=options.max_queue_windows,
                               max_batch_windows=options.max_batch_windows, on_batch=self._observe)
        metrics.model_queue(0)
        self.state = "ready"

    def _observe(self, report: BatchReport) -> None:
        """Each forward pass, into the proxy's metrics (the files every worker's /metrics sums,
        when started by the proxy; in this process's memory when standalone)."""
        queue = self.batcher.stats.queue_windows if self.batcher is not None else 0
        metrics.model_batch(report.windows, report.padded_tokens, report.seconds, queue)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self.batcher is not None:
            await self.batcher.close()
        path = self.options.socket_path
        if path is not None and self._socket_inode is not None:
            try:
                if os.stat(path).st_ino == self._socket_inode:
                    os.unlink(path)
            except OSError:
                pass
        log.info("model server on %s stopped", self.address)

    # -- connections ------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: requests run concurrently and are answered as they finish."""
        self._writers.add(writer)
        tasks: set[asyncio.Task] = set()
        need_hello = self.options.socket_path is None and bool(self.options.token)
        try:
            while True:
                if need_hello:
                    message = await asyncio.wait_for(frames.read_frame(reader), _HELLO_TIMEOUT_S)
                else:
                    message = await frames.read_frame(reader)
                if message is None:
                    break
                request_id, op = message.get("id"), message.get("op")
                if op == "hello":
                    if not self._token_ok(message.get("token")):
                        await _send(writer, frames.error_reply(request_id, frames.UNAUTHORIZED, "bad token"))
                        break
                    need_hello = False
                    await _send(writer, {"id": request_id, "ok": True})
                elif need_hello:
                    await _send(writer, frames.error_reply(request_id, frames.UNAUTHORIZED, "hello with a token first"))
                    break
                elif op == "status":
                    await _send(writer, self.status(request_id))
                elif op == "compress":
                    task = asyncio.create_task(self._compress(message, time.monotonic(), writer))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                else:
                    await _send(writer, frames.error_reply(request_id, frames.ERROR, f"unknown op {op!r}"))
        except frames.FrameError as exc:
            await _send(writer, frames.error_reply(None, frames.ERROR, str(exc)))
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            for task in list(tasks):  # the caller is gone: its windows are dropped, not computed
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._writers.discard(writer)
            writer.close()

    def _token_ok(self, token: Any) -> bool:
        expected = self.options.token
        if not expected:
            return True
        return isinstance(token, str) and hmac.compare_digest(token.encode(), expected.encode())

    async def _compress(self, message: dict[str, Any], received: float, writer: asyncio.StreamWriter) -> None:
        """The deadline is counted from ``received``, this server's own clock (timeout_ms is relative)."""
        request_id = message.get("id")
        reply = await self._compress_reply(message, received)
        reply["id"] = request_id
        await _send(writer, reply)

    async def _compress_reply(self, message: dict[str, Any], received: float) -> dict[str, Any]:
        if self.batcher is None:
            if self.state == "failed":
                return frames.error_reply(None, frames.ERROR, f"model failed to load: {self.error}")
            return frames.error_reply(None, frames.LOADING, "model is loading")
        try:
            texts, rate, force_words, timeout_ms = self._parse_compress(message)
        except ValueError as exc:
            return frames.error_reply(None, frames.ERROR, str(exc))
        try:
            results = await self.batcher.submit(texts, rate, force_words, received + timeout_ms / 1000)
        except Overloaded as exc:
            return frames.error_reply(None, frames.OVERLOADED, str(exc))
        except Expired as exc:
            return frames.error_reply(None, frames.TIMEOUT, str(exc))
        except Closed:
            return frames.error_reply(None, frames.ERROR, "model server is shutting down")
        except Exception as exc:
            log.exception("compress failed")
            return frames.error_reply(None, frames.ERROR, f"{type(exc).__name__}: {exc}")
        return {"texts": [result.text for result in results],
                "tokens_before": sum(int(result.tokens_before) for result in results),
                "tokens_after": sum(int(result.tokens_after) for result in results)}

    def _parse_compress(self, message: dict[str, Any]) -> tuple[list[str], float, list[str], int]:
        texts = message.get("texts")
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            raise ValueError("texts must be a list of strings")
        rate = message.get("rate")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError("rate must be a number in (0, 1]")
        force_words = message.get("force_words") or []
        if not isinstance(force_words, list) or not all(isinstance(word, str) for word in force_words):
            raise ValueError("force_words must be a list of strings")
        timeout_ms = message.get("timeout_ms", _DEFAULT_TIMEOUT_MS)
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)) or timeout_ms <= 0:
            raise ValueError("timeout_ms must be a positive number")
        return texts, float(rate), force_words, int(min(timeout_ms, self.options.max_timeout_ms))

    def status(self, request_id: Any = None) -> dict[str, Any]:
        """State, identity and the batcher's counters (see ``BatcherStats``)."""
        reply: dict[str, Any] = {
            "id": request_id, "state": self.state, "backend": self.backend, "device": self.device,
            "model": self.options.model, "queue_windows": 0, "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self._started, 3), "connections": len(self._writers),
            "max_batch_tokens": self.max_batch_tokens,
            "max_queue_windows": self.options.max_queue_windows,
        }
        if self.error is not None:
            reply["error"] = self.error
        if self.batcher is not None:
            reply.update(dataclasses.asdict(self.batcher.stats))
        return reply


async def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    """Write one frame; a peer that has gone away is not an error worth raising."""
    if writer.is_closing():
        return
    try:
        data = frames.encode(message)
    except frames.FrameError as exc:
        data = frames.encode(frames.error_reply(message.get("id"), frames.ERROR, str(exc)))
    try:
        writer.write(data)
        await writer.drain()
    except (ConnectionError, RuntimeError):
        pass


def _prepare_socket_path(path: str) -> None:
    """Make the socket's folder (0700) if needed; clear a stale socket; never steal a live one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if os.stat(folder).st_mode & 0o022:
        log.warning("%s is writable by others: they could replace the model server's socket", folder)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listening: stale
    else:
        raise FileExistsError(f"a server is already listening on {path}")
    finally:
        probe.close()


def default_threads(device: str, cores: int | None = None) -> int | None:
    """Intra-op threads when none are given: on a CPU, one core fewer than the machine has.

    The batcher runs two forward passes at once (the short lane beside the long one), and
    both draw on ONE intra-op pool (ONNX Runtime's is per session, torch's per process).
    With a pool as wide as the machine, a 4,000-token request's pass holds every core and a
    64-token pass beside it waits for them: its p99 was 14x its idle p50 with the backends'
    own default on 2 cores, against under 3x with one thread, where each pass runs in its
    lane's own thread. One core fewer leaves a core to the short lane (and to the planning
    thread and the event loop). On a GPU the device does the work: the backend's default.
    """
    if device != "cpu":
        return None
    return max(1, (cores if cores is not None else os.cpu_count() or 1) - 1)


def _load_lingua(options: ModelServerOptions) -> Any:
    from headroom.models.loader import load_lingua, resolve_device  # here: torch takes seconds to import

    threads = options.threads or default_threads(resolve_device(options.device))
    return load_lingua(options.model, device=options.device, backend=options.backend, threads=threads)


def serve_model(options: ModelServerOptions) -> None:
    """Run the model server until SIGTERM or SIGINT (blocking)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, stop.set)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread: the caller stops us some other way
        await ModelServer(options).run(stop)

    asyncio.run(main())
