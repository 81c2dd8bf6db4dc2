"""Benchmark Headroom's cost against talking to the upstream directly.

Starts, on free 127.0.0.1 ports, the mock upstream, the bare aiohttp
pass-through (the "physical limit" of a Python hop) and the Headroom proxy,
then measures each target in the same run with the same small, non-streaming
Anthropic ``/v1/messages`` request:

* latency: p50/p99 over ``--requests`` sequential requests on 1 connection
  (after ``--warmup``), plus a streaming case (time to first byte and to end);
* throughput: req/s with ``--connections`` concurrent keep-alive connections
  for ``--seconds`` (split into ``--throughput-rounds`` interleaved rounds), and
  the CPU each server spent per request meanwhile.

The derived figures are the project's performance targets: Headroom's added
p50 latency vs direct (<= 0.5 ms) and its throughput as a share of the bare
pass-through (>= 75 % for both: issue 23 raised pass-through's from 50 %).
Every loop is bounded by a request count *and* wall time, and all subprocesses
are killed on exit.

    python load_tests/bench.py                        # all three targets
    python load_tests/bench.py --targets direct,bare  # without Headroom
    python load_tests/bench.py --requests 500 --seconds 3 --json out.json
    python load_tests/bench.py --targets bare,headroom,headroom-all --seconds 20 --throughput-rounds 5

The load generator runs in this process, so on a small machine it competes
for CPU with the servers: compare targets within one run, not across runs. When
other work shares the machine, the servers' CPU per request under load (the
``CPU µs/req @N`` column) moves much less than their req/s: compare those too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiohttp

try:  # same loop as the servers: keeps the in-process load generator cheap
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testkit import processes  # noqa: E402 - testkit is found from the checkout
from testkit.ports import free_port  # noqa: E402

# Headroom variants: the name, then the flags it runs with. Limits are set too high to
# refuse anything, so the guards do all their work (charge, settle) without skewing results.
_NO_REFUSALS = "--rpm 1000000000 --tpm 1000000000000"
VARIANTS = {
    "headroom": "--no-optimize --no-cache --no-rate-limit",  # pure pass-through
    "headroom-all": _NO_REFUSALS,  # every feature on, state in memory (the embedded default)
    "headroom-redis": f"{_NO_REFUSALS} --redis-url {{redis}}",  # every feature on, state in Redis
    "headroom-2w": f"{_NO_REFUSALS} --workers 2",  # every feature on, 2 workers sharing a private Redis
}
TARGETS = ("direct", "bare", *VARIANTS)

HEADERS = {
    "content-type": "application/json",
    "x-api-key": "sk-ant-bench",
    "anthropic-version": "2023-06-01",
}
# Every request differs (the number), so the response cache always misses: the benchmark
# measures the cost of looking up and storing, never a replay.
BODY = json.dumps({
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello in one short sentence. #"}],
}).encode()
STREAM_BODY = json.dumps({**json.loads(BODY), "stream": True}).encode()
STREAM_HEADERS = {**HEADERS, "x-mock-events": "20"}
_SERIAL = iter(range(1 << 62))


def unique(body: bytes) -> bytes:
    return body.replace(b"#", str(next(_SERIAL)).encode(), 1)


# --------------------------------------------------------------------------
# Subprocesses
# --------------------------------------------------------------------------


class Processes:
    """Owns every server subprocess; ``close()`` (always called) stops them all."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.logdir = tempfile.mkdtemp(prefix="headroom-bench-")
        self.redis = None  # a PrivateRedis, for the Redis variant

    def spawn(self, name: str, argv: list[str], stdout: int | None = None) -> subprocess.Popen[bytes]:
        log = open(os.path.join(self.logdir, f"{name}.log"), "wb")
        # Own session: close() can take down worker processes a server forks.
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=stdout or log, stderr=log, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()  # the child holds its own descriptor
        self.procs.append((name, proc))
        return proc

    def spawn_announcing(self, name: str, argv: list[str], timeout: float = 15) -> str:
        """Start a server that prints '... listening on URL' and return URL."""
        proc = self.spawn(name, argv, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline().decode() if ready else ""
        if "listening on " not in line:
            raise RuntimeError(f"{name} did not start: {line!r}; see {self.log_tail(name)}")
        return line.strip().rsplit(" ", 1)[-1]

    def log_tail(self, name: str, chars: int = 2000) -> str:
        with suppress(OSError), open(os.path.join(self.logdir, f"{name}.log"), "rb") as f:
            return f.read()[-chars:].decode(errors="replace")
        return ""

    def stop(self, name: str) -> None:
        self._stop([(n, p) for n, p in self.procs if n == name])

    def close(self) -> None:
        self._stop(self.procs)
        if self.redis is not None:
            self.redis.stop()

    def _stop(self, procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
        """SIGTERM each server (graceful), then SIGKILL whatever is left of its process group."""
        for _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in procs:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.stdout:
                proc.stdout.close()


def start_references(procs: Processes, targets: list[str], mock: str) -> tuple[dict[str, str], str | None]:
    """The bases of ``direct`` (the mock) and ``bare`` (the aiohttp hop) when asked for, and a
    private Redis's URL when ``headroom-redis`` is (None otherwise)."""
    bases = {"direct": mock}
    if "bare" in targets:
        bases["bare"] = procs.spawn_announcing(
            "bare", [sys.executable, str(HERE / "bare_passthrough.py"), "--port", "0", "--upstream", mock])
    redis_url = None
    if "headroom-redis" in targets:
        from headroom.workers.redis_server import PrivateRedis

        procs.redis = PrivateRedis()
        redis_url = procs.redis.start()
    return bases, redis_url


async def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"headroom exited with code {proc.returncode}")
            with suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(url + "/health") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"headroom not healthy after {timeout:.0f}s")


# --------------------------------------------------------------------------
# Load generation
# --------------------------------------------------------------------------


def percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1)))]


async def latency(url: str, n: int, warmup: int, max_s: float, stream: bool = False) -> dict[str, Any]:
    """Sequential requests on one keep-alive connection; returns raw ms samples."""
    body, headers = (STREAM_BODY, STREAM_HEADERS) if stream else (BODY, HEADERS)
    total: list[float] = []
    ttfb: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as s:
        deadline = time.perf_counter() + max_s
        for i in range(warmup + n):
            if time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            try:
                async with s.post(url, data=unique(body), headers=headers) as r:
                    first = None
                    async for _ in r.content.iter_any():
                        if first is None:
                            first = time.perf_counter()
                    ok = r.status == 200
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok, first = False, None
            t1 = time.perf_counter()
            if i < warmup:
                continue
            if not ok:
                errors += 1
                continue
            total.append((t1 - t0) * 1000)
            ttfb.append(((first or t1) - t0) * 1000)
    return {"total": total, "ttfb": ttfb, "errors": errors}


def summarize(samples: dict[str, Any], stream: bool = False) -> dict[str, Any]:
    total, ttfb = sorted(samples["total"]), sorted(samples["ttfb"])
    out = {"n": len(total), "errors": samples["errors"], "p50_ms": percentile(total, 0.5),
           "p99_ms": percentile(total, 0.99), "mean_ms": sum(total) / len(total) if total else float("nan")}
    if stream:
        out["ttfb_p50_ms"] = percentile(ttfb, 0.5)
        out["ttfb_p99_ms"] = percentile(ttfb, 0.99)
    return out


def cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in a process group (a server and its workers)."""
    return sum(processes.cpu_seconds(pid) for pid in processes.find(group=pgid))


async def throughput(url: str, connections: int, seconds: float, max_requests: int,
                     pgid: int | None = None) -> dict[str, Any]:
    """``connections`` workers hammering ``url`` until the time or count bound; with ``pgid``,
    also the CPU that process group spent per request meanwhile (the warm-up left out)."""
    done = errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as s:

        async def worker(deadline: float, budget: int, count: bool) -> None:
            nonlocal done, errors
            sent = 0
            while sent < budget and time.perf_counter() < deadline:
                sent += 1
                try:
                    async with s.post(url, data=unique(BODY), headers=HEADERS) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                if count:
                    done, errors = done + ok, errors + (not ok)

        per_worker = max(1, max_requests // connections)
        warm = time.perf_counter() + min(1.0, seconds / 5)  # open connections, warm caches
        await asyncio.gather(*(worker(warm, per_worker, False) for _ in range(connections)))
        cpu0 = cpu_seconds(pgid) if pgid is not None else 0.0
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(t0 + seconds, per_worker, True) for _ in range(connections)))
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(pgid) - cpu0 if pgid is not None else 0.0
    out = {"requests": done, "errors": errors, "seconds": elapsed, "rps": done / elapsed}
    if pgid is not None:
        out["cpu_seconds"] = cpu
    return out


async def measure_throughput(bases: dict[str, str], pgids: dict[str, int],
                             args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Throughput of every target in interleaved rounds (``--throughput-rounds``), so that
    drift on a shared machine hits all alike; each round is ``--seconds`` / rounds long."""
    rounds = max(1, args.throughput_rounds)
    merged = {name: {"requests": 0, "errors": 0, "seconds": 0.0, "cpu_seconds": 0.0} for name in bases}
    for r in range(rounds):
        for name, base in bases.items():
            print(f"[{name}] throughput round {r + 1}/{rounds} ({args.connections} conns, "
                  f"{args.seconds / rounds:g}s)...", file=sys.stderr, flush=True)
            got = await throughput(base + "/v1/messages", args.connections, args.seconds / rounds,
                                   max(1, args.max_requests // rounds), pgids.get(name))
            for key in merged[name]:
                merged[name][key] += got.get(key, 0)
    out = {}
    for name, m in merged.items():
        out[name] = {"requests": m["requests"], "errors": m["errors"], "seconds": m["seconds"],
                     "rps": m["requests"] / m["seconds"] if m["seconds"] else 0.0}
        if name in pgids and m["requests"]:
            out[name]["cpu_us_per_request"] = 1e6 * m["cpu_seconds"] / m["requests"]
    return out


async def upstream_hits(mock: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(mock + "/_mock/stats") as r:
        return (await r.json())["requests"]


async def measure_latency(bases: dict[str, str], pgids: dict[str, int], args: argparse.Namespace,
                          stream: bool) -> dict[str, dict[str, Any]]:
    """Latency of every target in interleaved rounds, so drift on a shared machine hits all alike."""
    rounds = max(1, args.rounds)
    n = max(1, (args.requests // 4 if stream else args.requests) // rounds)
    warmup = max(1, args.warmup // rounds)
    merged = {name: {"total": [], "ttfb": [], "errors": 0, "cpu": 0.0} for name in bases}
    for r in range(rounds):
        for name, base in bases.items():
            kind = "streaming" if stream else "latency"
            print(f"[{name}] {kind} round {r + 1}/{rounds} ({n} req, 1 conn)...", file=sys.stderr, flush=True)
            cpu0 = cpu_seconds(pgids[name]) if name in pgids else 0.0
            got = await latency(base + "/v1/messages", n, warmup, args.max_phase_seconds, stream=stream)
            if name in pgids:
                merged[name]["cpu"] += cpu_seconds(pgids[name]) - cpu0
            for key in ("total", "ttfb"):
                merged[name][key] += got[key]
            merged[name]["errors"] += got["errors"]
    out = {}
    for name, samples in merged.items():
        out[name] = summarize(samples, stream)
        if name in pgids and samples["total"]:
            # Includes the warm-up requests' share: an upper bound, good for comparing targets.
            out[name]["cpu_us_per_request"] = 1e6 * samples["cpu"] / (len(samples["total"]) + rounds * warmup)
    return out


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


def derive(results: dict[str, Any]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    direct, bare, hr = results.get("direct"), results.get("bare"), results.get("headroom")
    full, redis, two = results.get("headroom-all"), results.get("headroom-redis"), results.get("headroom-2w")
    if direct and full:
        d["all_features_added_p50_ms"] = full["latency"]["p50_ms"] - direct["latency"]["p50_ms"]
    if full and redis:  # the same features, state in Redis instead of memory
        d["redis_path_added_p50_ms"] = redis["latency"]["p50_ms"] - full["latency"]["p50_ms"]
        d["redis_path_added_p50_ok"] = d["redis_path_added_p50_ms"] <= 0.3
    if redis and two and redis["throughput"]["rps"]:  # both keep their state in Redis
        d["two_workers_rps_ratio"] = two["throughput"]["rps"] / redis["throughput"]["rps"]
    if direct and hr:
        d["headroom_added_p50_ms"] = hr["latency"]["p50_ms"] - direct["latency"]["p50_ms"]
        d["headroom_added_p50_ok"] = d["headroom_added_p50_ms"] <= 0.5
    if direct and bare:
        d["bare_added_p50_ms"] = bare["latency"]["p50_ms"] - direct["latency"]["p50_ms"]
    if bare and hr:  # Headroom's own cost, net of what any aiohttp hop costs here
        d["headroom_added_p50_vs_bare_ms"] = hr["latency"]["p50_ms"] - bare["latency"]["p50_ms"]
    if bare and hr and bare["throughput"]["rps"]:
        d["headroom_rps_pct_of_bare"] = 100 * hr["throughput"]["rps"] / bare["throughput"]["rps"]
        d["headroom_rps_ok"] = d["headroom_rps_pct_of_bare"] >= 75
    if bare and full and bare["throughput"]["rps"]:
        d["all_features_rps_pct_of_bare"] = 100 * full["throughput"]["rps"] / bare["throughput"]["rps"]
        d["all_features_rps_ok"] = d["all_features_rps_pct_of_bare"] >= 75
    return d


def report(results: dict[str, Any], derived: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"| target | p50 ms | p99 ms | stream TTFB p50 ms | stream total p50 ms | req/s @{args.connections} "
        f"| proxy CPU µs/req | CPU µs/req @{args.connections} | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lat, thr, st = r["latency"], r["throughput"], r.get("stream")
        errors = lat["errors"] + thr["errors"] + (st["errors"] if st else 0)
        stream_cols = f"{st['ttfb_p50_ms']:.3f} | {st['p50_ms']:.3f}" if st else "- | -"
        cpu = f"{lat['cpu_us_per_request']:.0f}" if "cpu_us_per_request" in lat else "-"
        loaded_cpu = f"{thr['cpu_us_per_request']:.0f}" if "cpu_us_per_request" in thr else "-"
        lines.append(f"| {name} | {lat['p50_ms']:.3f} | {lat['p99_ms']:.3f} | {stream_cols} | {thr['rps']:.0f} "
                     f"| {cpu} | {loaded_cpu} | {errors} |")
    lines.append("")
    if "bare_added_p50_ms" in derived:
        lines.append(f"- bare pass-through added p50 vs direct: {derived['bare_added_p50_ms']:.3f} ms")
    if "headroom_added_p50_ms" in derived:
        ok = "PASS" if derived["headroom_added_p50_ok"] else "FAIL"
        lines.append(f"- Headroom added p50 vs direct: {derived['headroom_added_p50_ms']:.3f} ms "
                     f"(target <= 0.5 ms): {ok}")
    if "headroom_added_p50_vs_bare_ms" in derived:
        lines.append(f"- Headroom added p50 vs bare pass-through: {derived['headroom_added_p50_vs_bare_ms']:.3f} ms")
    if "headroom_rps_pct_of_bare" in derived:
        ok = "PASS" if derived["headroom_rps_ok"] else "FAIL"
        lines.append(f"- Headroom throughput vs bare pass-through: {derived['headroom_rps_pct_of_bare']:.1f} % "
                     f"(target >= 75 %): {ok}")
    if "all_features_rps_pct_of_bare" in derived:
        ok = "PASS" if derived["all_features_rps_ok"] else "FAIL"
        lines.append(f"- every feature on (memory state), throughput vs bare pass-through: "
                     f"{derived['all_features_rps_pct_of_bare']:.1f} % (target >= 75 %): {ok}")
    if "all_features_added_p50_ms" in derived:
        lines.append("- every feature on (memory state), added p50 vs direct: "
                     f"{derived['all_features_added_p50_ms']:.3f} ms")
    if "redis_path_added_p50_ms" in derived:
        ok = "PASS" if derived["redis_path_added_p50_ok"] else "FAIL"
        lines.append(f"- Redis path, added p50 vs memory state: {derived['redis_path_added_p50_ms']:.3f} ms "
                     f"(target <= 0.3 ms): {ok}")
    if "two_workers_rps_ratio" in derived:
        lines.append("- throughput, 2 workers vs 1 (every feature on, state in Redis): "
                     f"x{derived['two_workers_rps_ratio']:.2f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


async def run(args: argparse.Namespace, procs: Processes) -> dict[str, Any]:
    py = sys.executable
    mock = procs.spawn_announcing("mock", [py, "-m", "testkit.mock_upstream", "--port", "0"])
    bases, redis_url = start_references(procs, args.targets, mock)
    pgids: dict[str, int] = {}
    for name, proc in procs.procs:
        if name == "bare":
            pgids[name] = proc.pid  # its CPU is measured like Headroom's
    for name in args.targets:
        if name in VARIANTS:
            port = free_port()
            flags = VARIANTS[name].format(redis=redis_url)
            proc = procs.spawn(name, [
                py, "-m", "headroom", "proxy", "--host", "127.0.0.1", "--port", str(port),
                "--anthropic-api-url", mock, "--openai-api-url", mock, *shlex.split(flags),
                *shlex.split(args.headroom_args)])
            bases[name] = f"http://127.0.0.1:{port}"
            pgids[name] = proc.pid  # its own session: workers share its process group
            try:
                await wait_healthy(bases[name], proc, args.startup_timeout)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n--- {name} log ---\n{procs.log_tail(name)}") from None
    await asyncio.sleep(2.0)  # let every worker come up
    targets = {name: bases[name] for name in args.targets}
    before = await upstream_hits(mock)
    lat = await measure_latency(targets, pgids, args, stream=False)
    streams = await measure_latency(targets, pgids, args, stream=True) if args.stream else {}
    loaded = await measure_throughput(targets, pgids, args)
    results = {name: {"url": base, "latency": lat[name], "stream": streams.get(name), "throughput": loaded[name]}
               for name, base in targets.items()}
    hits = await upstream_hits(mock) - before
    print(f"upstream received {hits} requests (every one a cache miss by design)", file=sys.stderr)
    return results


def int_list(text: str) -> list[int]:
    """A comma-separated list of integers (an argparse ``type``)."""
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Headroom overhead benchmark (see module docstring)")
    p.add_argument("--requests", type=int, default=2000, help="latency samples per target (1 connection)")
    p.add_argument("--rounds", type=int, default=5, help="latency is measured in this many interleaved rounds")
    p.add_argument("--warmup", type=int, default=200, help="latency warm-up requests per target")
    p.add_argument("--seconds", type=float, default=5.0, help="throughput phase length per target")
    p.add_argument("--throughput-rounds", type=int, default=5,
                   help="throughput is measured in this many interleaved rounds (of --seconds / rounds each)")
    p.add_argument("--connections", type=int, default=64, help="concurrent connections for throughput")
    p.add_argument("--max-requests", type=int, default=1_000_000, help="hard cap per throughput phase")
    p.add_argument("--max-phase-seconds", type=float, default=60.0, help="hard cap per latency phase")
    p.add_argument("--targets", default="direct,bare,headroom",
                   help=f"comma list of {','.join(TARGETS)}")
    p.add_argument("--no-stream", dest="stream", action="store_false", help="skip the streaming case")
    p.add_argument("--headroom-args", default="", help="extra args for `headroom proxy` (shell-quoted)")
    p.add_argument("--startup-timeout", type=float, default=60.0)
    p.add_argument("--json", metavar="OUT", help="also write results as JSON here")
    args = p.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        p.error(f"unknown targets: {sorted(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs = Processes()
    try:
        results = (uvloop.run if uvloop else asyncio.run)(run(args, procs))
    except RuntimeError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.close()
    derived = derive(results)
    print(report(results, derived, args))
    if args.json:
        meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
                "args": {k: v for k, v in vars(args).items() if k != "json"}}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results, "derived": derived}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
