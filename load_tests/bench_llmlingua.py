"""Benchmark the LLMLingua-2 model server (issue "LLMLingua-2 model server").

Measured in one run, on this machine, with real processes throughout:

1. **Backends.** For each ``--backends`` entry (torch, onnx = ONNX fp32, onnx-int8) a real
   ``headroom model-server`` is started through the CLI on a Unix socket (its own session,
   always stopped). For each text size (``--sizes``, default 64, 512, 4000 tokens) and each
   concurrency (``--concurrency``, default 1 and 8 clients, each its own ``ModelClient`` and
   connection), clients send ``compress(rate=0.3)`` back to back for ``--seconds``: per-request
   latency (p50, p99) and throughput in input tokens/s (``tokens_before`` summed / wall time
   from the first send to the last reply).
2. **Mixed load**, per backend: a 64-token request's latency idle, then while two other
   clients keep 4,000-token requests in flight.
3. **Reference**: llmlingua's own ``PromptCompressor(model_name=<same folder>,
   use_llmlingua2=True).compress_prompt(text, rate=0.3)`` in this process, at the same sizes,
   1 thread and N threads sharing one compressor (what a naive server does).
4. **Worker RSS**: ``headroom proxy --workers 1`` twice against the mock upstream, plain and
   with ``--llmlingua``; after a few requests with a long prose tool output, the RSS of the
   HTTP worker (the main process's child that is not the model server) and of the model server.
5. **Verdicts** against the issue's targets, PASS/FAIL with the numbers.

Texts are English prose (testkit.tiny_lingua's sentences, shuffled with a fixed seed) cut
to an exact number of ``cl100k_base`` tokens, the unit ``tokens_before`` reports for both
Headroom and llmlingua; the model tokenizer's count of each text is printed too.

Without ``--model`` a random-weight model with bert-base-multilingual-cased's real shapes is
used (built and exported to ONNX under ``--work-dir`` if missing, 1-2 min): its latency is the
real model's, its output is noise. Nothing is downloaded.

    TIKTOKEN_CACHE_DIR=.tiktoken python load_tests/bench_llmlingua.py [--seconds 15] [--json out.json]
    python load_tests/bench_llmlingua.py --seconds 3 --sizes 64,512 --skip-rss        # a quick look
    python load_tests/bench_llmlingua.py --model models/llmlingua-2-...-meetingbank --device cuda

p99 with fewer than 100 samples is the nearest-rank value (close to the maximum): read it with ``n``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if (ROOT / ".tiktoken").is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT / ".tiktoken"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench import int_list  # noqa: E402 - this folder, as for every script run from it

from headroom.workers.model_client import ModelClient, ModelUnavailable  # noqa: E402
from testkit.ports import free_port  # noqa: E402
from testkit.services import proxy_command, start_mock, stop, wait_until_ready  # noqa: E402

RATE = 0.3
SMALL, LARGE = 64, 4000  # the mixed case and the verdicts are defined on these sizes
MIXED_BACKGROUND = 2
REQUEST_TIMEOUT_S = 600.0
HEADERS = {"x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01"}


def log(message: str) -> None:
    print(f"[bench_llmlingua {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- texts --------------------------------------------------------------------------------


def _encoding():
    import tiktoken

    return tiktoken.get_encoding("cl100k_base")


def make_text(tokens: int, seed: int) -> str:
    """English prose of exactly ``tokens`` cl100k tokens (up to a merge at the cut)."""
    from testkit.tiny_lingua import _corpus_lines

    sentences = [s for line in _corpus_lines() for s in line.replace(". ", ".|").split("|")]
    rng = random.Random(seed)
    enc = _encoding()
    parts: list[str] = []
    while len(enc.encode_ordinary(" ".join(parts))) < tokens + 8:
        rng.shuffle(sentences)
        parts.extend(sentences)
        parts.append("\n")
    return enc.decode(enc.encode_ordinary(" ".join(parts).replace(" \n ", "\n"))[:tokens]).strip()


def make_prose_chars(chars: int, seed: int) -> str:
    """English prose of at most ``chars`` characters, cut at a word boundary (a tool output's size)."""
    text = make_text(chars // 3, seed)  # > 4 characters per cl100k token: always long enough
    return text[:chars].rsplit(" ", 1)[0]


def make_texts(sizes: list[int], variants: int = 4) -> dict[int, list[str]]:
    """A few different texts per size, so that no two consecutive requests are identical."""
    return {size: [make_text(size, seed=size * 100 + i) for i in range(variants)] for size in sizes}


def describe_texts(texts: dict[int, list[str]], model: Path) -> dict[int, dict[str, float]]:
    enc = _encoding()
    tokenizer = None
    if (model / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    out = {}
    for size, group in texts.items():
        info = {"cl100k": statistics.mean(len(enc.encode_ordinary(t)) for t in group),
                "chars": statistics.mean(len(t) for t in group)}
        if tokenizer is not None:
            info["model_tokens"] = statistics.mean(len(tokenizer.encode(t, add_special_tokens=False)) for t in group)
        out[size] = info
    return out


# -- measurements -------------------------------------------------------------------------


@dataclass
class Samples:
    latencies_ms: list[float] = field(default_factory=list)
    tokens_before: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, ms: float, tokens: int) -> None:
        self.latencies_ms.append(ms)
        self.tokens_before += tokens

    def fail(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1


@dataclass
class Bounds:
    """Every loop stops: after ``seconds`` once ``min_requests`` are done, and never past
    ``hard_s`` or ``max_requests``."""

    seconds: float
    min_requests: int
    max_requests: int = 10_000
    hard_s: float = 300.0

    def go_on(self, start: float, started: int) -> bool:
        elapsed = time.perf_counter() - start
        if started >= self.max_requests or elapsed >= max(self.hard_s, self.seconds):
            return False
        return elapsed < self.seconds or started < self.min_requests


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def summarize(samples: Samples, wall_s: float) -> dict[str, Any]:
    lat = samples.latencies_ms
    return {"n": len(lat), "errors": samples.errors, "p50_ms": percentile(lat, 0.5), "p99_ms": percentile(lat, 0.99),
            "mean_ms": statistics.mean(lat) if lat else None, "wall_s": round(wall_s, 3),
            "tokens_per_s": samples.tokens_before / wall_s if wall_s > 0 and lat else None}


async def client_loop(client: ModelClient, texts: list[str], samples: Samples, bounds: Bounds, start: float,
                      counter: list[int], offset: int = 0) -> None:
    """One client: requests back to back, sharing ``counter`` (started requests) with its peers."""
    i = offset
    while bounds.go_on(start, counter[0]):
        counter[0] += 1
        text = texts[i % len(texts)]
        i += 1
        t0 = time.perf_counter()
        try:
            reply = await client.compress([text], RATE, timeout_s=REQUEST_TIMEOUT_S)
        except ModelUnavailable as exc:
            samples.fail(exc.reason)
            continue
        samples.add((time.perf_counter() - t0) * 1000, reply.tokens_before)


COUNTERS = ("batches", "windows", "padded_tokens", "inference_s")


def server_work(before: dict | None, after: dict | None, wall_s: float) -> dict[str, Any]:
    """What the model server did during a cell, from its status counters (see BatcherStats)."""
    if not before or not after:
        return {}
    work = {k: round(after.get(k, 0) - before.get(k, 0), 3) for k in COUNTERS}
    work["busy_pct"] = 100 * work["inference_s"] / wall_s if wall_s > 0 else None  # share of wall time in forward
    work["ms_per_batch"] = 1000 * work["inference_s"] / work["batches"] if work["batches"] else None
    return work


async def server_cell(url: str, texts: list[str], concurrency: int, bounds: Bounds) -> dict[str, Any]:
    clients = [ModelClient(url) for _ in range(concurrency)]
    samples, counter = Samples(), [0]
    try:
        for client in clients:  # connect first: the cell measures requests, not connects
            before = await client.status()
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(c, texts, samples, bounds, start, counter, k)
                               for k, c in enumerate(clients)))
        wall = time.perf_counter() - start
        after = await clients[0].status()
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    return {**summarize(samples, wall), "server": server_work(before, after, wall)}


async def mixed_case(url: str, small: list[str], large: list[str], seconds: float) -> dict[str, Any]:
    """A 64-token client alone, then beside MIXED_BACKGROUND clients sending 4,000-token requests."""
    bounds = Bounds(seconds=seconds, min_requests=5, hard_s=max(60.0, 4 * seconds))
    idle = await server_cell(url, small, 1, bounds)
    background = [ModelClient(url) for _ in range(MIXED_BACKGROUND)]
    bg_samples, bg_counter = Samples(), [0]
    until_cancelled = Bounds(seconds=REQUEST_TIMEOUT_S, min_requests=0, max_requests=1000, hard_s=REQUEST_TIMEOUT_S)
    tasks = [asyncio.create_task(client_loop(c, large, bg_samples, until_cancelled, time.perf_counter(), bg_counter, k))
             for k, c in enumerate(background)]
    try:
        await asyncio.sleep(0.5)  # the large requests are planned and queued
        loaded = await server_cell(url, small, 1, bounds)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in background))  # the server drops their windows
    return {"idle": idle, "loaded": loaded, "background_completed": len(bg_samples.latencies_ms)}


async def timeout_share(url: str, texts: list[str], timeout_ms: float, bounds: Bounds) -> dict[str, Any]:
    """One client, requests back to back, each allowed ``timeout_ms`` as the proxy allows it:
    the share answered in time (compressed) and the latency of those that were."""
    client = ModelClient(url)
    samples, counter, start, i = Samples(), [0], time.perf_counter(), 0
    try:
        await client.status()
        while bounds.go_on(start, counter[0]):
            counter[0] += 1
            t0 = time.perf_counter()
            try:
                reply = await client.compress([texts[i % len(texts)]], RATE, timeout_s=timeout_ms / 1000)
            except ModelUnavailable as exc:
                samples.fail(exc.reason)
            else:
                samples.add((time.perf_counter() - t0) * 1000, reply.tokens_before)
            i += 1
    finally:
        await client.close()
    out = summarize(samples, time.perf_counter() - start)
    out["requests"] = counter[0]
    out["in_time"] = len(samples.latencies_ms) / counter[0] if counter[0] else None
    out["p95_ms"] = percentile(samples.latencies_ms, 0.95)
    return out


async def bench_timeouts(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The proxy's case: its own model server (default backend, ``cores - 1`` threads as
    ``headroom proxy --workers 1`` starts it) and one client sending 2-8 KB prose tool outputs."""
    threads = args.threads or max(1, (os.cpu_count() or 1) - 1)
    texts = {kb: [make_prose_chars(kb * 1024, seed=kb * 10 + i) for i in range(4)] for kb in args.timeout_kb}
    out: dict[str, Any] = {"backend": args.timeout_backend, "threads": threads, "timeout_ms": args.timeout_ms,
                           "cells": []}
    with model_server(args.model, args.timeout_backend, args.device, workdir, threads) as (url, proc, log_path):
        status = await wait_model_ready(url, proc, log_path)
        out["backend"] = status.get("backend")
        warm = ModelClient(url)
        try:
            for kb in args.timeout_kb:
                await warm.compress([texts[kb][0]], RATE, timeout_s=REQUEST_TIMEOUT_S)
        finally:
            await warm.close()
        for kb in args.timeout_kb:
            bounds = Bounds(args.seconds, args.timeout_requests, max_requests=args.timeout_requests * 4,
                            hard_s=args.max_cell_seconds)
            cell = {"kb": kb, "chars": statistics.mean(len(t) for t in texts[kb]),
                    **await timeout_share(url, texts[kb], args.timeout_ms, bounds)}
            out["cells"].append(cell)
            log(f"timeouts: {kb} KB: {fmt(100 * (cell['in_time'] or 0), 1)} % in {args.timeout_ms:g} ms "
                f"({brief(cell)}, p95 {fmt(cell['p95_ms'])} ms)")
    return out


# -- processes ----------------------------------------------------------------------------


def start_group(argv: list[str], log_path: Path) -> subprocess.Popen:
    """A child in its own session, so that it and everything it starts can be killed together."""
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))  # carried packages too
    with open(log_path, "w") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": path})


def stop_group(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the leader (it stops its own children), then SIGKILL whatever is left of its group."""
    with suppress(ProcessLookupError):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def tail(path: Path, lines: int = 30) -> str:
    with suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextmanager
def model_server(model: Path, backend: str, device: str, workdir: Path, threads: int | None = None,
                 max_batch_tokens: int | None = None):
    """A ``headroom model-server`` for ``backend`` on a Unix socket; yields (url, proc)."""
    sock = workdir / f"{backend}.sock"
    log_path = workdir / f"model-server-{backend}.log"
    argv = [sys.executable, "-m", "headroom", "model-server", "--socket", str(sock), "--llmlingua-model", str(model),
            "--llmlingua-backend", backend, "--llmlingua-device", device]
    if threads:
        argv += ["--threads", str(threads)]
    if max_batch_tokens:
        argv += ["--max-batch-tokens", str(max_batch_tokens)]
    proc = start_group(argv, log_path)
    try:
        yield f"unix://{sock}", proc, log_path
    finally:
        stop_group(proc)


async def wait_model_ready(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 600.0) -> dict:
    client = ModelClient(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"model server exited with {proc.returncode}:\n{tail(log_path)}")
            status = await client.status()
            if status and status.get("state") == "ready":
                return status
            if status and status.get("state") == "failed":
                raise RuntimeError(f"model server failed to load: {status.get('error')}\n{tail(log_path)}")
            await asyncio.sleep(0.2)
    finally:
        await client.close()
    raise RuntimeError(f"model server not ready after {timeout:g}s:\n{tail(log_path)}")


# -- phases -------------------------------------------------------------------------------


async def bench_backend(args: argparse.Namespace, backend: str, texts: dict[int, list[str]],
                        mixed_texts: dict[int, list[str]], workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"cells": []}
    with model_server(args.model, backend, args.device, workdir, args.threads, args.max_batch_tokens) as (
            url, proc, log_path):
        t0 = time.perf_counter()
        status = await wait_model_ready(url, proc, log_path)
        out["load_s"] = round(time.perf_counter() - t0, 2)
        out["server"] = {k: status.get(k) for k in ("backend", "device", "pid")}
        log(f"{backend}: ready in {out['load_s']} s ({status.get('backend')} on {status.get('device')})")
        warm = ModelClient(url)
        try:
            for size in sorted({*texts, *mixed_texts}):  # first calls of a shape are slower
                await warm.compress([(texts.get(size) or mixed_texts[size])[0]], RATE, timeout_s=REQUEST_TIMEOUT_S)
        finally:
            await warm.close()
        for size in args.sizes:
            for concurrency in args.concurrency:
                bounds = Bounds(args.seconds, max(args.min_requests, concurrency), hard_s=args.max_cell_seconds)
                cell = await server_cell(url, texts[size], concurrency, bounds)
                out["cells"].append({"engine": backend, "size": size, "concurrency": concurrency, **cell})
                log(f"{backend}: {size} tok x{concurrency}: {brief(cell)}")
        if not args.skip_mixed:
            out["mixed"] = await mixed_case(url, mixed_texts[SMALL], mixed_texts[LARGE], args.seconds)
            m = out["mixed"]
            log(f"{backend}: mixed: idle {brief(m['idle'])}; loaded {brief(m['loaded'])}")
        out["server_rss_mb"] = rss_mb(proc.pid)
    return out


def brief(cell: dict[str, Any]) -> str:
    return (f"n={cell['n']} p50={fmt(cell['p50_ms'])} ms p99={fmt(cell['p99_ms'])} ms "
            f"{fmt(cell['tokens_per_s'])} tok/s errors={cell['errors'] or 0}")


def reference_cell(compressor: Any, texts: list[str], concurrency: int, bounds: Bounds) -> dict[str, Any]:
    """``concurrency`` threads calling one PromptCompressor, as a naive server would."""
    samples, counter, lock = Samples(), [0], threading.Lock()

    def worker(offset: int) -> None:
        i = offset
        while True:
            with lock:
                if not bounds.go_on(start, counter[0]):
                    return
                counter[0] += 1
            text = texts[i % len(texts)]
            i += 1
            t0 = time.perf_counter()
            try:
                result = compressor.compress_prompt(text, rate=RATE)
            except Exception as exc:  # noqa: BLE001 - counted: a shared compressor may not be thread-safe
                with lock:
                    samples.fail(type(exc).__name__)
                continue
            with lock:
                samples.add((time.perf_counter() - t0) * 1000, int(result["origin_tokens"]))

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(bounds.hard_s + REQUEST_TIMEOUT_S)
    return summarize(samples, time.perf_counter() - start)


def bench_reference(args: argparse.Namespace, texts: dict[int, list[str]]) -> dict[str, Any]:
    from llmlingua import PromptCompressor

    t0 = time.perf_counter()
    compressor = PromptCompressor(model_name=str(args.model), use_llmlingua2=True, device_map=args.device)
    out: dict[str, Any] = {"load_s": round(time.perf_counter() - t0, 2), "cells": []}
    log(f"llmlingua: loaded in {out['load_s']} s")
    for size in args.sizes:
        compressor.compress_prompt(texts[size][0], rate=RATE)  # warm-up
        for concurrency in args.concurrency:
            bounds = Bounds(args.seconds, max(args.min_requests, concurrency), hard_s=args.max_cell_seconds)
            cell = reference_cell(compressor, texts[size], concurrency, bounds)
            out["cells"].append({"engine": "llmlingua", "size": size, "concurrency": concurrency, **cell})
            log(f"llmlingua: {size} tok x{concurrency}: {brief(cell)}")
    return out


# -- worker RSS ---------------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def children(pid: int) -> list[int]:
    out: list[int] = []
    with suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def cmdline(pid: int) -> str:
    with suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return ""


def proxy_processes(main_pid: int, log_path: Path) -> dict[str, Any]:
    """The HTTP worker and the model server, with their RSS.

    The worker is the pid Sanic logs as "Starting worker [pid]": with one worker, the main
    process itself (it serves alone: headroom.serve.serve_single); with several, a child."""
    kids = [{"pid": pid, "cmd": cmdline(pid)[:160], "rss_mb": rss_mb(pid)} for pid in children(main_pid)]
    server = next((k for k in kids if "model-server" in k["cmd"]), None)
    logged = {int(pid) for pid in re.findall(r"Starting worker \[(\d+)\]", tail(log_path, 200))}
    main = {"pid": main_pid, "cmd": cmdline(main_pid)[:160], "rss_mb": rss_mb(main_pid)}
    workers = [k for k in [main, *kids] if k["pid"] in logged]
    worker = max(workers, key=lambda k: k["rss_mb"] or 0, default=None)
    return {"main_rss_mb": rss_mb(main_pid), "worker": worker, "model_server": server, "children": kids}


def prose_request(tag: int) -> dict[str, Any]:
    page = make_text(1200, seed=9000 + tag)  # ~6,000 characters: above the pipeline's 2,000-char floor
    return {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [
        {"role": "user", "content": "Read the procurement page."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "WebFetch",
                                           "input": {"url": "https://intra.example/page"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": page},
                                     {"type": "text", "text": "Which xylophone vendor was picked?"}]},
    ]}


def proxy_rss(args: argparse.Namespace, mock_url: str, lingua: bool, workdir: Path) -> dict[str, Any]:
    import httpx

    flags = ["--workers", "1"]
    if lingua:
        flags += ["--llmlingua", "--llmlingua-model", str(args.model), "--llmlingua-device", args.device,
                  "--llmlingua-backend", args.rss_backend,
                  "--llmlingua-timeout-ms", "60000"]  # compress every request, even a slow first one
    port = free_port()
    log_path = workdir / f"proxy-{'lingua' if lingua else 'plain'}.log"
    proc = start_group(proxy_command(port, mock_url, *flags), log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{base}/health", proc, log_path, timeout=120)
        deadline = time.monotonic() + 600
        while lingua and httpx.get(f"{base}/health").json().get("llmlingua") != "ready":
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the proxy's model server never got ready:\n{tail(log_path)}")
            time.sleep(0.25)
        transforms = []
        for i in range(args.rss_requests):
            r = httpx.post(f"{base}/v1/messages", json=prose_request(i), headers=HEADERS, timeout=120)
            r.raise_for_status()
            transforms.append(r.headers.get("x-headroom-transforms", ""))
        time.sleep(1.0)
        out = proxy_processes(proc.pid, log_path)
        out["transforms"] = transforms
        return out
    finally:
        stop_group(proc)


def bench_rss(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    mock = start_mock(workdir / "mock.log")
    try:
        plain = proxy_rss(args, mock.url, False, workdir)
        log(f"rss: plain proxy worker {fmt(mb(plain['worker']))} MB")
        lingua = proxy_rss(args, mock.url, True, workdir)
        log(f"rss: --llmlingua worker {fmt(mb(lingua['worker']))} MB, model server "
            f"{fmt(mb(lingua['model_server']))} MB, transforms {lingua['transforms']}")
    finally:
        stop(mock.proc)
    return {"plain": plain, "llmlingua": lingua}


def mb(proc: dict | None) -> float | None:
    return proc.get("rss_mb") if proc else None


# -- verdicts and report ------------------------------------------------------------------


def find(cells: list[dict], engine: str, size: int, concurrency: int) -> dict | None:
    return next((c for c in cells if (c["engine"], c["size"], c["concurrency"]) == (engine, size, concurrency)), None)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def verdicts(result: dict[str, Any], conc: list[int]) -> list[dict[str, Any]]:
    cells = result["cells"]
    out: list[dict[str, Any]] = []
    top = max(conc)

    def tps(engine: str, c: int) -> float | None:
        cell = find(cells, engine, LARGE, c)
        return cell["tokens_per_s"] if cell else None

    r_top, r_one = ratio(tps("onnx-int8", top), tps("torch", top)), ratio(tps("onnx-int8", 1), tps("torch", 1))
    out.append(verdict("ONNX int8 >= 4x torch throughput (4,000 tok)", r_top, r_top is not None and r_top >= 4,
                       f"x{top}: {fmt(r_top, 2)}x ({fmt(tps('onnx-int8', top))} vs {fmt(tps('torch', top))} tok/s); "
                       f"x1: {fmt(r_one, 2)}x"))
    for c in conc:
        ours = {e: tps(e, c) for e in result["backends"]}
        best = max((e for e in ours if ours[e] is not None), key=lambda e: ours[e], default=None)
        r = ratio(ours.get(best), tps("llmlingua", c)) if best else None
        out.append(verdict(f"4,000-tok throughput >= 4x llmlingua (x{c})", r, r is not None and r >= 4,
                           f"{best}: {fmt(ours.get(best) if best else None)} vs llmlingua "
                           f"{fmt(tps('llmlingua', c))} tok/s = {fmt(r, 2)}x"))
    for backend, mixed in result.get("mixed", {}).items():
        idle, loaded = mixed["idle"]["p50_ms"], mixed["loaded"]["p99_ms"]
        out.append(verdict(f"{backend}: 64-tok p50 idle <= 50 ms", idle, idle is not None and idle <= 50,
                           f"{fmt(idle, 1)} ms"))
        r = ratio(loaded, idle)
        out.append(verdict(f"{backend}: 64-tok p99 under 4,000-tok load <= 3x idle p50", r, r is not None and r <= 3,
                           f"{fmt(loaded, 1)} ms = {fmt(r, 2)}x idle p50 (3x = {fmt(3 * idle if idle else None, 1)} ms"
                           f"; 3 x 50 ms = 150 ms)"))
    for cell in (result.get("timeouts") or {}).get("cells", []):
        share, limit = cell["in_time"], result["timeouts"]["timeout_ms"]
        out.append(verdict(f"{cell['kb']} KB prose compressed within {limit:g} ms in >= 95% (1 client)", share,
                           share is not None and share >= 0.95,
                           f"{fmt(100 * share if share is not None else None, 1)} % of {cell['requests']}; "
                           f"p50 {fmt(cell['p50_ms'])} ms, p95 {fmt(cell['p95_ms'])} ms"))
    if "rss" in result:
        with_, without = mb(result["rss"]["llmlingua"]["worker"]), mb(result["rss"]["plain"]["worker"])
        r = ratio(with_, without)
        out.append(verdict("worker RSS with --llmlingua within 10% of without", r, r is not None and r <= 1.10,
                           f"{fmt(with_)} vs {fmt(without)} MB = {fmt(r, 3)}x"))
    return out


def verdict(name: str, value: float | None, ok: bool, detail: str) -> dict[str, Any]:
    return {"target": name, "value": value, "status": "n/a" if value is None else ("PASS" if ok else "FAIL"),
            "detail": detail}


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def report(result: dict[str, Any]) -> str:
    host = result["host"]
    sizes = ", ".join(f"{size} cl100k = {fmt(t.get('model_tokens'))} model tokens"
                      for size, t in sorted(result["texts"].items()))
    lines = [f"Model `{result['args']['model']}`; {host['cpus']} CPUs, load average (1 min) "
             f"{host['load_avg_start'][0]:.1f} at the start, {host['load_avg_end'][0]:.1f} at the end; "
             f"texts: {sizes}.",
             "", "## Throughput and latency (rate 0.3)", "",
             "busy % = share of the cell's wall time the model server spent in forward passes; ms/batch = "
             "mean forward pass; padding = padded tokens computed / model tokens of the texts answered.", "",
             "| engine | size (cl100k tok) | clients | n | errors | p50 ms | p99 ms | input tok/s "
             "| busy % | ms/batch | padding |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for c in result["cells"]:
        errors = ", ".join(f"{k}:{v}" for k, v in c["errors"].items()) or "0"
        work = c.get("server") or {}
        padding = ratio(work.get("padded_tokens"), result["texts"][c["size"]].get("model_tokens", 0) * c["n"])
        lines.append(f"| {c['engine']} | {c['size']} | {c['concurrency']} | {c['n']} | {errors} | {fmt(c['p50_ms'], 1)}"
                     f" | {fmt(c['p99_ms'], 1)} | {fmt(c['tokens_per_s'])} | {fmt(work.get('busy_pct'))} "
                     f"| {fmt(work.get('ms_per_batch'))} | {fmt(padding, 2)} |")
    if result.get("mixed"):
        lines += ["", f"## 64-token request: idle vs beside {MIXED_BACKGROUND} clients sending 4,000-token requests",
                  "", "| backend | idle n | idle p50 ms | idle p99 ms | loaded n | loaded p50 ms | loaded p99 ms "
                  "| loaded ms/batch | loaded windows/batch |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for backend, m in result["mixed"].items():
            i, ld, work = m["idle"], m["loaded"], m["loaded"].get("server") or {}
            per_batch = ratio(work.get("windows"), work.get("batches"))
            lines.append(f"| {backend} | {i['n']} | {fmt(i['p50_ms'], 1)} | {fmt(i['p99_ms'], 1)} | {ld['n']} "
                         f"| {fmt(ld['p50_ms'], 1)} | {fmt(ld['p99_ms'], 1)} | {fmt(work.get('ms_per_batch'))} "
                         f"| {fmt(per_batch, 1)} |")
    if result.get("timeouts"):
        t = result["timeouts"]
        lines += ["", f"## Prose tool outputs, one client, {t['backend']} with {t['threads']} thread(s), "
                      f"timeout {t['timeout_ms']:g} ms", "",
                  "| prose | chars | requests | in time % | p50 ms | p95 ms | p99 ms |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for c in t["cells"]:
            lines.append(f"| {c['kb']} KB | {fmt(c['chars'])} | {c['requests']} "
                         f"| {fmt(100 * c['in_time'] if c['in_time'] is not None else None, 1)} "
                         f"| {fmt(c['p50_ms'], 1)} | {fmt(c['p95_ms'], 1)} | {fmt(c['p99_ms'], 1)} |")
    if result.get("rss"):
        lines += ["", "## RSS (MB) of `headroom proxy --workers 1`", "",
                  "| proxy | HTTP worker | model server | main process |", "|---|---:|---:|---:|"]
        for name, r in result["rss"].items():
            lines.append(f"| {name} | {fmt(mb(r['worker']), 1)} | {fmt(mb(r['model_server']), 1)} "
                         f"| {fmt(r['main_rss_mb'], 1)} |")
    if result.get("backend_info"):
        lines += ["", "## Model servers", "", "| backend | load s | server RSS MB after the run |", "|---|---:|---:|"]
        for backend, info in result["backend_info"].items():
            lines.append(f"| {backend} | {info['load_s']} | {fmt(info['server_rss_mb'], 1)} |")
    lines += ["", "## Targets", ""]
    lines += [f"- **{v['status']}** {v['target']}: {v['detail']}" for v in result["verdicts"]]
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="torch,onnx,onnx-int8", help="model server backends, comma-separated")
    p.add_argument("--sizes", type=int_list, default=[SMALL, 512, LARGE], help="text sizes in cl100k tokens")
    p.add_argument("--concurrency", type=int_list, default=[1, 8], help="client counts")
    p.add_argument("--seconds", type=float, default=15.0, help="seconds of requests per cell")
    p.add_argument("--min-requests", type=int, default=3, help="requests per cell even past --seconds")
    p.add_argument("--max-cell-seconds", type=float, default=300.0, help="no new request after this, per cell")
    p.add_argument("--model", type=Path, help="model folder (default: the random real-size model in --work-dir)")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/real"), help="where the random model is kept")
    p.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU host")
    p.add_argument("--threads", type=int, default=0,
                   help="threads per forward pass in the model servers; 0: the backend's default (every core). "
                        "A proxy's own model server uses cores - workers")
    p.add_argument("--max-batch-tokens", type=int, default=None,
                   help="the model servers' --max-batch-tokens (default: theirs: 1024 on a CPU, 8192 on a GPU)")
    p.add_argument("--skip-reference", action="store_true", help="do not run llmlingua's own PromptCompressor")
    p.add_argument("--skip-rss", action="store_true", help="do not start the proxies for the RSS check")
    p.add_argument("--skip-mixed", action="store_true", help="no mixed-load case")
    p.add_argument("--rss-backend", default="auto", help="--llmlingua-backend of the proxy in the RSS check")
    p.add_argument("--rss-requests", type=int, default=5, help="requests sent to each proxy before reading RSS")
    p.add_argument("--timeouts", action="store_true",
                   help="also measure the share of 2/4/8 KB prose compressed within --timeout-ms (one client)")
    p.add_argument("--timeouts-only", action="store_true", help="only that (no backends, reference, RSS)")
    p.add_argument("--timeout-ms", type=float, default=None, help="default: the proxy's --llmlingua-timeout-ms")
    p.add_argument("--timeout-kb", type=int_list, default=[2, 4, 8], help="prose sizes in KB for --timeouts")
    p.add_argument("--timeout-backend", default="auto", help="model server backend for --timeouts")
    p.add_argument("--timeout-requests", type=int, default=20, help="requests per size for --timeouts, at least")
    p.add_argument("--json", type=Path, help="write every number here")
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.timeout_ms is None:
        from headroom.config import ProxyConfig

        args.timeout_ms = float(ProxyConfig().llmlingua_timeout_ms)
    if args.timeouts_only:
        args.timeouts, args.backends, args.skip_reference, args.skip_rss = True, [], True, True
    return args


def ensure_model(args: argparse.Namespace) -> Path:
    """``--model``, or the random real-size model (and its ONNX export when an ONNX backend is asked for)."""
    from headroom.models.export import read_marker
    from testkit.tiny_lingua import REAL_SIZE_NAME, build_real_size_model

    model = args.model or args.work_dir / REAL_SIZE_NAME
    if args.model is None and not (model / "config.json").is_file():
        log(f"building the random real-size model in {args.work_dir} (about a minute)")
        build_real_size_model(args.work_dir)
    export = model.parent / f"{model.name}-onnx"
    backends = [*args.backends, args.timeout_backend] if args.timeouts else args.backends
    onnx = any(b.startswith("onnx") or b == "auto" for b in backends)
    if onnx and read_marker(export) is None and read_marker(model) is None:
        from headroom.models.export import export_onnx

        log(f"exporting {model} to {export} (fp32 + int8, 1-2 min)")
        export_onnx(str(model), str(export), int8=True)
    return model.resolve()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.model = ensure_model(args)
    texts = make_texts(args.sizes)
    mixed_texts = {} if args.skip_mixed else make_texts([SMALL, LARGE])
    result: dict[str, Any] = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                              "host": {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg()},
                              "texts": describe_texts({**mixed_texts, **texts}, args.model),
                              "backends": args.backends, "cells": [], "mixed": {}, "backend_info": {}}
    log(f"model {args.model}; texts (mean per size): {result['texts']}")
    workdir = Path(tempfile.mkdtemp(prefix="hr-bench-lingua-", dir="/tmp"))  # short: socket paths
    try:
        for backend in args.backends:
            got = asyncio.run(bench_backend(args, backend, texts, mixed_texts, workdir))
            result["cells"] += got["cells"]
            if "mixed" in got:
                result["mixed"][backend] = got["mixed"]
            result["backend_info"][backend] = {"load_s": got["load_s"], "server_rss_mb": got["server_rss_mb"],
                                               **got["server"]}
        if not args.skip_reference:
            result["cells"] += bench_reference(args, texts)["cells"]
        if args.timeouts:
            result["timeouts"] = asyncio.run(bench_timeouts(args, workdir))
        if not args.skip_rss:
            result["rss"] = bench_rss(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["host"]["load_avg_end"] = os.getloadavg()
    result["verdicts"] = verdicts(result, args.concurrency)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
