"""Regenerate ``docs/benchmarks.md`` and its PNG charts in one command.

    TIKTOKEN_CACHE_DIR=.tiktoken python load_tests/report.py            # full run, about 5-10 minutes
    python load_tests/report.py --quick                                  # about 2 minutes
    python load_tests/report.py --from-json run.json                     # re-render a saved run, no load
    python load_tests/report.py --bench-json out.json                    # proxy numbers from bench.py --json

What it measures, on free 127.0.0.1 ports, in one run (compare ratios, not absolutes):

1. **Cold start and idle memory.** ``headroom proxy`` with 1 and 2 workers, and the original
   Headroom 0.42.0 when its venv exists (``load_tests/original_headroom.py``): seconds from
   launch to the first 200 on ``/health``; then, idle, the RSS (``/proc/PID/status``) of each
   Sanic worker process and of the whole process group.
2. **Latency at 1 connection** for every target, in interleaved rounds (bench.py's loop).
3. **Throughput and latency against concurrency** (``--concurrency``): each target for
   ``--seconds`` at each client count; req/s and per-request p50/p99. "Added" latency is the
   target's minus the mock's (called directly) at the same concurrency.
4. **Tokens saved per content type** on the corpus (``testkit.corpus.report.run_all``).
5. **LLMLingua backends** from ``bench_llmlingua.py --json`` (``--llmlingua-json``, default
   ``docs/llmlingua.json``); the section is skipped when the file is absent.

Targets: the mock called directly, a bare aiohttp pass-through, Headroom passthrough, every
feature on (state in memory, in Redis, 2 workers) and the original. The load generator shares
the machine's CPUs with the servers. Needs matplotlib.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT / ".tiktoken"))

import aiohttp  # noqa: E402
import bench  # noqa: E402
import original_headroom  # noqa: E402

from testkit import processes  # noqa: E402
from testkit.ports import free_port  # noqa: E402

DOCS = ROOT / "docs"
LABELS = {
    "direct": "mock upstream, called directly",
    "bare": "bare aiohttp pass-through",
    "headroom": "Headroom, passthrough",
    "headroom-all": "Headroom, every feature (memory)",
    "headroom-redis": "Headroom, every feature (Redis)",
    "headroom-2w": "Headroom, every feature, 2 workers",
    "original": f"original Headroom {original_headroom.VERSION}",
}
STYLE = {"direct": ("k", ":"), "bare": ("tab:gray", "--"), "headroom": ("tab:blue", "-"),
         "headroom-all": ("tab:green", "-"), "headroom-redis": ("tab:purple", "-"),
         "headroom-2w": ("tab:orange", "-"), "original": ("tab:red", "-")}
# The targets.
MIN_RPS_SHARE_OF_BARE = 70.0
MAX_ADDED_P50_PASSTHROUGH_MS = 0.25
MAX_ADDED_P50_ALL_MS = 0.5
MIN_X_ORIGINAL = 20.0
MAX_IDLE_WORKER_MB = 80.0
MAX_COLD_START_S = 1.0


def log(msg: str) -> None:
    print(f"[report] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Processes and /proc
# --------------------------------------------------------------------------


def spawn(procs: bench.Processes, name: str, argv: list[str], env: dict[str, str] | None = None,
          cwd: str | Path = ROOT) -> subprocess.Popen[bytes]:
    """Like ``Processes.spawn`` (own session, log file, stopped by ``close``) with an environment."""
    with open(os.path.join(procs.logdir, f"{name}.log"), "wb") as logf:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=logf, stderr=logf, start_new_session=True,
                                env=env or {**os.environ, "PYTHONUNBUFFERED": "1"})
    procs.procs.append((name, proc))
    return proc


def headroom_argv(port: int, mock: str, flags: str) -> list[str]:
    import shlex

    return [sys.executable, "-m", "headroom", "proxy", "--host", "127.0.0.1", "--port", str(port),
            "--anthropic-api-url", mock, "--openai-api-url", mock, *shlex.split(flags)]


def start_target(procs: bench.Processes, name: str, mock: str, args: argparse.Namespace,
                 redis_url: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if name == "original":
        env, home = original_headroom.environment()
        proc = spawn(procs, name, original_headroom.command(args.original_venv, port, mock), env=env, cwd=home)
    else:
        flags = args.variants.get(name, bench.VARIANTS.get(name, ""))
        proc = spawn(procs, name, headroom_argv(port, mock, flags.format(redis=redis_url)))
    return proc, f"http://127.0.0.1:{port}"


def group_processes(pgid: int) -> list[dict[str, Any]]:
    """Every live process of a process group: pid, RSS (MB) and its role."""
    out = []
    for pid in processes.find(group=pgid):
        with suppress(OSError):
            rss = processes.rss_mb(pid)
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if rss is None:
                continue
            worker = any(e.startswith(b"SANIC_WORKER_NAME=Sanic-Server") for e in environ)
            role = "worker" if worker else ("main" if pid == pgid else "helper")
            out.append({"pid": pid, "rss_mb": rss, "role": role, "cmd": cmd[:160]})
    return out


def memory(pgid: int) -> dict[str, Any]:
    ps = group_processes(pgid)
    workers = [p["rss_mb"] for p in ps if p["role"] == "worker"]
    if not workers:  # a single-process server (the original): the main process serves
        workers = [p["rss_mb"] for p in ps if p["role"] == "main"]
    return {"worker_mb": workers, "total_mb": sum(p["rss_mb"] for p in ps), "processes": ps}


async def first_health(base: str, proc: subprocess.Popen[bytes], timeout: float) -> float | None:
    """Poll ``/health`` every 10 ms; seconds since now until the first 200, None on timeout/exit."""
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as s:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                return None
            with suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with s.get(base + "/health") as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            await asyncio.sleep(0.01)
    return None


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------


async def startup(args: argparse.Namespace, mock: str) -> dict[str, Any]:
    """Cold start and idle RSS of headroom (passthrough, every feature, 2 workers) and the original, in turn."""
    kinds = {name: bench.VARIANTS[name].format(redis="") for name in ("headroom", "headroom-all", "headroom-2w")}
    if args.original_ok:
        kinds["original"] = ""
    out: dict[str, Any] = {}
    for kind, flags in kinds.items():
        colds, mems = [], []
        for rep in range(args.reps):
            procs = bench.Processes()
            try:
                t0 = time.perf_counter()
                if kind == "original":
                    proc, base = start_target(procs, kind, mock, args)
                else:
                    port = free_port()
                    proc = spawn(procs, kind, headroom_argv(port, mock, flags))
                    base = f"http://127.0.0.1:{port}"
                launched = time.perf_counter() - t0
                cold = await first_health(base, proc, args.startup_timeout)
                if cold is None:
                    log(f"{kind}: no 200 on /health; log: {procs.log_tail(kind, 800)}")
                    continue
                colds.append(cold + launched)
                await asyncio.sleep(args.idle_seconds)  # every worker up, imports done, idle
                mems.append(memory(proc.pid))
                log(f"{kind} #{rep + 1}: cold start {colds[-1]:.2f} s, worker RSS "
                    f"{', '.join(f'{m:.0f}' for m in mems[-1]['worker_mb'])} MB, total {mems[-1]['total_mb']:.0f} MB")
            finally:
                procs.close()
        if colds:
            last = mems[-1]
            out[kind] = {"cold_start_s": statistics.median(colds), "cold_start_all_s": colds,
                         "worker_mb": last["worker_mb"], "total_mb": last["total_mb"],
                         "processes": last["processes"]}
    return out


async def loaded(url: str, conns: int, seconds: float, max_requests: int) -> dict[str, Any]:
    """``conns`` clients back to back for ``seconds`` (after a short warm-up): req/s and latency."""
    samples: list[float] = []
    done = errors = 0
    connector = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as s:

        async def client(deadline: float, budget: int, record: bool) -> None:
            nonlocal done, errors
            for _ in range(budget):
                if time.perf_counter() >= deadline:
                    return
                t0 = time.perf_counter()
                try:
                    async with s.post(url, data=bench.unique(bench.BODY), headers=bench.HEADERS) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                if record:
                    if ok:
                        samples.append((time.perf_counter() - t0) * 1000)
                    done, errors = done + ok, errors + (not ok)

        per_client = max(1, max_requests // conns)
        warm = time.perf_counter() + min(1.0, seconds / 5)
        await asyncio.gather(*(client(warm, per_client, False) for _ in range(conns)))
        t0 = time.perf_counter()
        await asyncio.gather(*(client(t0 + seconds, per_client, True) for _ in range(conns)))
        elapsed = time.perf_counter() - t0
    samples.sort()
    return {"rps": done / elapsed, "requests": done, "errors": errors, "seconds": elapsed,
            "p50_ms": bench.percentile(samples, 0.5), "p99_ms": bench.percentile(samples, 0.99)}


async def load(args: argparse.Namespace, procs: bench.Processes, mock: str) -> dict[str, Any]:
    bases, redis_url = bench.start_references(procs, args.targets, mock)
    pgids: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for name in args.targets:
        if name in ("direct", "bare"):
            continue
        proc, base = start_target(procs, name, mock, args, redis_url)
        if await first_health(base, proc, args.startup_timeout) is None:
            skipped[name] = f"did not become healthy: {procs.log_tail(name, 400)!r}"
            log(f"{name} skipped: {skipped[name]}")
            procs.stop(name)
            continue
        bases[name], pgids[name] = base, proc.pid
    await asyncio.sleep(2.0)  # every worker up
    ns = argparse.Namespace(rounds=args.rounds, requests=args.requests, warmup=args.warmup,
                            max_phase_seconds=args.max_phase_seconds)
    lat = await bench.measure_latency(bases, pgids, ns, stream=False)
    sweep: dict[str, dict[str, Any]] = {name: {} for name in bases}
    for conns in args.concurrency:
        for name, base in bases.items():
            log(f"[{name}] {conns} connections, {args.seconds:g} s...")
            sweep[name][str(conns)] = await loaded(base + "/v1/messages", conns, args.seconds, args.max_requests)
    after = {name: memory(pgid) for name, pgid in pgids.items()}
    return {"latency": lat, "sweep": sweep, "rss_after_load": after, "skipped": skipped}


def corpus() -> list[dict[str, Any]]:
    from testkit.corpus.report import run_all

    rows = []
    for o in asyncio.run(run_all()):
        rows.append({"case": o.case.name, "tool": o.case.tool, "provider": o.case.provider,
                     "before": o.block_before, "after": o.block_after, "saved": o.saved_share,
                     "request_before": o.receipt.tokens_before, "request_after": o.receipt.tokens_after,
                     "transforms": list(o.receipt.transforms)})
    return rows


def from_bench_json(path: Path) -> dict[str, Any]:
    """bench.py --json: 1-connection latency, and throughput at its one concurrency."""
    data = json.loads(path.read_text())
    conns = str(data.get("meta", {}).get("args", {}).get("connections", 64))
    lat = {name: r["latency"] for name, r in data["results"].items()}
    sweep = {name: {conns: {**r["throughput"], "p50_ms": None, "p99_ms": None}}
             for name, r in data["results"].items()}
    return {"latency": lat, "sweep": sweep, "rss_after_load": {}, "skipped": {}}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    mem_gb = None
    with suppress(OSError, StopIteration):
        mem_gb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal:"))) / 1024 / 1024
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu, "cpus": os.cpu_count(), "mem_gb": mem_gb, "python": platform.python_version(),
            "kernel": platform.release(), "loadavg_start": os.getloadavg()}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    procs = bench.Processes()
    try:
        mock = procs.spawn_announcing("mock", [sys.executable, "-m", "testkit.mock_upstream", "--port", "0"])
        result: dict[str, Any] = {}
        if not args.skip_startup:
            log("cold start and idle memory...")
            result["startup"] = await startup(args, mock)
        if args.bench_json:
            result.update(from_bench_json(args.bench_json))
        else:
            result.update(await load(args, procs, mock))
        return result
    finally:
        procs.close()


# --------------------------------------------------------------------------
# Verdicts, charts, markdown
# --------------------------------------------------------------------------


def fmt(x: Any, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    return f"{x:,.{digits}f}"


def top_conc(data: dict[str, Any]) -> str | None:
    keys = {k for s in data.get("sweep", {}).values() for k in s}
    return max(keys, key=int) if keys else None


def verdicts(data: dict[str, Any]) -> list[dict[str, Any]]:
    lat, sweep, start = data.get("latency", {}), data.get("sweep", {}), data.get("startup", {})
    top = top_conc(data)
    out: list[dict[str, Any]] = []

    def add(target: str, value: float | None, ok: bool, detail: str) -> None:
        out.append({"target": target, "value": value,
                    "status": "n/a" if value is None else ("PASS" if ok else "FAIL"), "detail": detail})

    def rps(name: str) -> float | None:
        cell = sweep.get(name, {}).get(top) if top else None
        return cell["rps"] if cell and cell.get("requests", 1) else None

    hr, bare, orig = rps("headroom"), rps("bare"), rps("original")
    share = 100 * hr / bare if hr and bare else None
    add(f"passthrough throughput ≥ {MIN_RPS_SHARE_OF_BARE:.0f} % of the bare hop's", share,
        share is not None and share >= MIN_RPS_SHARE_OF_BARE,
        f"{fmt(share, 1)} % at {top} connections ({fmt(hr)} vs {fmt(bare)} req/s)")
    for name, limit in (("headroom", MAX_ADDED_P50_PASSTHROUGH_MS), ("headroom-all", MAX_ADDED_P50_ALL_MS)):
        added = lat[name]["p50_ms"] - lat["bare"]["p50_ms"] if name in lat and "bare" in lat else None
        add(f"{LABELS[name]}: added p50 over the bare hop ≤ {limit} ms", added,
            added is not None and added <= limit, f"{fmt(added, 3)} ms at 1 connection")
    for name in ("headroom", "headroom-all"):
        x = rps(name) / orig if rps(name) and orig else None
        reason = "" if orig else f" (original not measured: {data.get('original_skipped') or 'no data'})"
        add(f"{LABELS[name]}: ≥ {MIN_X_ORIGINAL:.0f}× the original's throughput", x,
            x is not None and x >= MIN_X_ORIGINAL,
            f"×{fmt(x, 1)} at {top} connections ({fmt(rps(name))} vs {fmt(orig)} req/s){reason}")
    workers = [(k, m) for k in ("headroom", "headroom-all", "headroom-2w")
               for m in start.get(k, {}).get("worker_mb", [])]
    worst = max((m for _, m in workers), default=None)
    add(f"RSS per idle worker ≤ {MAX_IDLE_WORKER_MB:.0f} MB", worst,
        worst is not None and worst <= MAX_IDLE_WORKER_MB,
        "largest " + fmt(worst, 1) + " MB (" + ", ".join(f"{k}: {m:.1f}" for k, m in workers) + ")")
    cold = start.get("headroom", {}).get("cold_start_s")
    add(f"`/health` within {MAX_COLD_START_S:g} s of launch", cold,
        cold is not None and cold <= MAX_COLD_START_S,
        f"{fmt(cold, 2)} s passthrough; every feature {fmt(start.get('headroom-all', {}).get('cold_start_s'), 2)} s, "
        f"2 workers {fmt(start.get('headroom-2w', {}).get('cold_start_s'), 2)} s")
    return out


HEADLINE_START, HEADLINE_END = "<!-- bench-headline:start -->", "<!-- bench-headline:end -->"


def headline(data: dict[str, Any]) -> str:
    """The README's benchmark paragraph, every figure taken from this run's verdicts."""
    m = data.get("machine", {})
    lines = [f"In the run behind [docs/benchmarks.md](docs/benchmarks.md) ({m.get('date', '?')[:10]}, "
             f"{m.get('cpus', '?')} CPUs, shared with the load generator):", ""]
    lines += [f"- {v['status']}: {v['target']} — {v['detail']}" for v in data.get("verdicts", [])]
    return "\n".join(lines)


def replace_headline(readme: str, data: dict[str, Any]) -> str:
    """``readme`` with the text between the headline markers replaced by :func:`headline`."""
    start, end = readme.index(HEADLINE_START) + len(HEADLINE_START), readme.index(HEADLINE_END)
    return readme[:start] + "\n" + headline(data) + "\n" + readme[end:]


def charts(data: dict[str, Any], out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: dict[str, str] = {}
    sweep = data.get("sweep", {})

    def series(name: str, key: str, minus: str | None = None) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for conc, cell in sorted(sweep.get(name, {}).items(), key=lambda kv: int(kv[0])):
            val = cell.get(key)
            base = sweep.get(minus, {}).get(conc, {}).get(key) if minus else 0.0
            if val is None or base is None or not cell.get("requests", 1):
                continue
            xs.append(int(conc))
            ys.append(val - base)
        return xs, ys

    if sweep:
        fig, ax = plt.subplots(figsize=(8, 4.8))
        for name in sweep:
            xs, ys = series(name, "rps")
            color, ls = STYLE.get(name, (None, "-"))
            ax.plot(xs, ys, marker="o", color=color, linestyle=ls, label=LABELS.get(name, name))
        concs = sorted({int(c) for s in sweep.values() for c in s})
        ax.set_xscale("log", base=2)
        ax.set_xticks(concs, [str(c) for c in concs])
        ax.set_xlabel("concurrent connections")
        ax.set_ylabel("requests / s")
        ax.set_title("Throughput against concurrency (one machine, one run)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "bench-throughput.png", dpi=110)
        plt.close(fig)
        made["throughput"] = "bench-throughput.png"

        if any(c.get("p50_ms") is not None for s in sweep.values() for c in s.values()):
            fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
            for ax, key in zip(axes, ("p50_ms", "p99_ms")):
                for name in sweep:
                    if name == "direct":
                        continue
                    xs, ys = series(name, key, minus="direct")
                    color, ls = STYLE.get(name, (None, "-"))
                    ax.plot(xs, ys, marker="o", color=color, linestyle=ls, label=LABELS.get(name, name))
                ax.set_xscale("log", base=2)
                ax.set_xticks(concs, [str(c) for c in concs])
                ax.set_yscale("symlog", linthresh=1)
                ax.axhline(0, color="k", linewidth=0.5)
                ax.set_xlabel("concurrent connections")
                ax.set_ylabel("ms added over the mock called directly")
                ax.set_title(f"added {key[:3]} latency")
                ax.grid(alpha=0.3)
            axes[0].legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(out / "bench-latency.png", dpi=110)
            plt.close(fig)
            made["latency"] = "bench-latency.png"

    rows = data.get("corpus") or []
    if rows:
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.2))
        names = [r["case"] for r in rows][::-1]
        saved = [100 * r["saved"] for r in rows][::-1]
        ax.barh(names, saved, color="tab:blue")
        for i, r in enumerate(rows[::-1]):
            ax.text(max(saved[i], 0) + 1, i, f"{r['before']:,} → {r['after']:,}", va="center", fontsize=7)
        ax.set_xlim(0, 115)
        ax.set_xlabel("% of the tool output's tokens saved (cl100k_base)")
        ax.set_title("Tokens saved per content type (corpus)")
        fig.tight_layout()
        fig.savefig(out / "bench-tokens.png", dpi=110)
        plt.close(fig)
        made["tokens"] = "bench-tokens.png"

    start = data.get("startup") or {}
    if start:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        names = list(start)
        labels = [LABELS.get(n, n).replace("Headroom, every feature, ", "Headroom ") for n in names]
        a1.bar(labels, [max(start[n]["worker_mb"]) for n in names], color=[STYLE[n][0] for n in names],
               label="per worker (largest)")
        a1.bar(labels, [start[n]["total_mb"] for n in names], fill=False, edgecolor="k", label="all processes")
        a1.axhline(MAX_IDLE_WORKER_MB, color="r", linestyle="--", linewidth=1, label="target per worker")
        a1.set_ylabel("RSS, MB (idle)")
        a1.legend(fontsize=7)
        a2.bar(labels, [start[n]["cold_start_s"] for n in names], color=[STYLE[n][0] for n in names])
        a2.axhline(MAX_COLD_START_S, color="r", linestyle="--", linewidth=1)
        a2.set_ylabel("launch → first 200 on /health, s")
        for ax in (a1, a2):
            ax.tick_params(axis="x", labelsize=7, rotation=15)
        fig.suptitle("Memory per worker and cold start")
        fig.tight_layout()
        fig.savefig(out / "bench-memory.png", dpi=110)
        plt.close(fig)
        made["memory"] = "bench-memory.png"

    lingua = data.get("llmlingua")
    if lingua and lingua.get("cells"):
        cells = lingua["cells"]
        top = max(c["concurrency"] for c in cells)
        engines = list(dict.fromkeys(c["engine"] for c in cells))
        sizes = sorted({c["size"] for c in cells})
        fig, ax = plt.subplots(figsize=(8, 4.5))
        width = 0.8 / max(1, len(engines))
        for i, engine in enumerate(engines):
            vals = [next((c.get("tokens_per_s") or 0 for c in cells
                          if (c["engine"], c["size"], c["concurrency"]) == (engine, s, top)), 0) for s in sizes]
            ax.bar([j + i * width for j in range(len(sizes))], vals, width, label=engine)
        ax.set_xticks([j + width * (len(engines) - 1) / 2 for j in range(len(sizes))])
        ax.set_xticklabels([f"{s} tokens" for s in sizes])
        ax.set_ylabel("input tokens / s")
        ax.set_title(f"LLMLingua-2 backends, {top} concurrent clients")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "bench-llmlingua.png", dpi=110)
        plt.close(fig)
        made["llmlingua"] = "bench-llmlingua.png"
    return made


def markdown(data: dict[str, Any], made: dict[str, str]) -> str:
    m = data.get("machine", {})
    lat, sweep, start = data.get("latency", {}), data.get("sweep", {}), data.get("startup", {})
    top = top_conc(data)
    lines = [
        "# Benchmarks", "",
        "Generated by `python load_tests/report.py" + (" --quick" if data.get("quick") else "") + "` on "
        f"{m.get('date', '?')}: {m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs, "
        f"{fmt(m.get('mem_gb'), 0)} GB RAM, Python {m.get('python', '?')}, Linux {m.get('kernel', '?')}.", "",
        "> **Read the ratios, not the absolutes.** Every target ran in the same run on the same machine, with the "
        "load generator (aiohttp, in the report's own process) sharing its CPUs; absolute numbers swing by ±40 % "
        "between runs and machines, the ratios between targets much less. Every request is unique, so the "
        "response cache always misses: these are the costs of looking up and storing, never of a replay.", "",
    ]
    if "throughput" in made:
        lines += [f"![throughput against concurrency]({made['throughput']})", ""]
    lines += ["## Targets", ""]
    lines += [f"- **{v['status']}** {v['target']}: {v['detail']}" for v in data.get("verdicts", [])]
    lines += [""]
    if data.get("original_skipped"):
        lines += [f"The original Headroom was not measured: {data['original_skipped']}.", ""]
    if data.get("skipped"):
        lines += [f"- `{k}` skipped: {v}" for k, v in data["skipped"].items()] + [""]
    lines += ["## Targets compared", ""] + [f"- `{k}`: {v}" for k, v in LABELS.items() if k in lat or k in sweep]
    lines += ["", "Headroom's flags: passthrough `--no-optimize --no-cache --no-rate-limit`; every feature on: "
              "optimisation, response cache and rate limits (set too high to refuse anything); the Redis variant "
              "keeps that state in a private Redis; `--workers 2` shares one. The original runs with its own "
              "defaults (`headroom proxy --no-telemetry`, INFO logs to a file) and, like ours, rate limits "
              "too high to refuse anything (`--rpm 1000000000 --tpm 1000000000000`; its default is 60 requests a "
              "minute); offline it cannot fetch its "
              "tiktoken encoding, so it forwards these small requests unoptimised.", ""]
    if lat:
        lines += ["## Latency at 1 connection", "",
                  "| target | n | p50 ms | p99 ms | added p50 vs direct | added p50 vs bare | proxy CPU µs/req |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        d50 = lat.get("direct", {}).get("p50_ms")
        b50 = lat.get("bare", {}).get("p50_ms")
        for name, r in lat.items():
            lines.append(f"| {name} | {r['n']} | {fmt(r['p50_ms'], 3)} | {fmt(r['p99_ms'], 3)} "
                         f"| {fmt(r['p50_ms'] - d50 if d50 is not None else None, 3)} "
                         f"| {fmt(r['p50_ms'] - b50 if b50 is not None else None, 3)} "
                         f"| {fmt(r.get('cpu_us_per_request'))} |")
        lines += [""]
    if sweep:
        concs = sorted({k for s in sweep.values() for k in s}, key=int)
        lines += ["## Throughput and latency against concurrency", ""]
        if "latency" in made:
            lines += [f"![added latency against concurrency]({made['latency']})", ""]
        lines += ["req/s (p50 / p99 ms per request)", "",
                  "| target | " + " | ".join(f"{c} conn" for c in concs) + f" | % of bare @{top} |",
                  "|---|" + "---:|" * (len(concs) + 1)]
        bare_top = sweep.get("bare", {}).get(top, {}).get("rps")
        for name, s in sweep.items():
            cells = []
            for c in concs:
                cell = s.get(c)
                cells.append("–" if not cell else f"{fmt(cell['rps'])} ({fmt(cell.get('p50_ms'), 2)} / "
                             f"{fmt(cell.get('p99_ms'), 2)})" + (f", {cell['errors']} err" if cell["errors"] else ""))
            share = 100 * s[top]["rps"] / bare_top if bare_top and top in s else None
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {fmt(share, 1)} |")
        lines += [""]
    if start:
        lines += ["## Memory per worker and cold start", ""]
        if "memory" in made:
            lines += [f"![memory and cold start]({made['memory']})", ""]
        lines += ["Cold start: launch to the first 200 on `/health` (median of "
                  f"{len(next(iter(start.values()))['cold_start_all_s'])}). RSS: `VmRSS` of each Sanic worker "
                  "process (the original serves from its single process), idle after start-up, and of every "
                  "process in the server's group (main process, workers, helpers).", "",
                  "| server | cold start s | RSS per worker MB | RSS all processes MB | RSS per worker after load MB |",
                  "|---|---:|---:|---:|---:|"]
        after = data.get("rss_after_load", {})
        for name, r in start.items():
            loaded_mb = after.get(name, {}).get("worker_mb")
            lines.append(f"| {LABELS.get(name, name)} "
                         f"| {fmt(r['cold_start_s'], 2)} | {', '.join(f'{x:.1f}' for x in r['worker_mb'])} "
                         f"| {fmt(r['total_mb'], 1)} | "
                         f"{', '.join(f'{x:.1f}' for x in loaded_mb) if loaded_mb else '–'} |")
        lines += [""]
    rows = data.get("corpus") or []
    if rows:
        lines += ["## Tokens saved per content type", ""]
        if "tokens" in made:
            lines += [f"![tokens saved]({made['tokens']})", ""]
        lines += ["The corpus (`testkit/corpus`) through the default pipeline; tokens of the tool output "
                  "(cl100k_base) before and after.", "",
                  "| case | tool | tokens before | after | saved | transforms |", "|---|---|---:|---:|---:|---|"]
        for r in rows:
            lines.append(f"| {r['case']} | {r['tool']} | {r['before']:,} | {r['after']:,} | {100 * r['saved']:.1f} % "
                         f"| {', '.join(r['transforms']) or '–'} |")
        before, after_ = sum(r["before"] for r in rows), sum(r["after"] for r in rows)
        rb, ra = sum(r["request_before"] for r in rows), sum(r["request_after"] for r in rows)
        lines += [f"| **total, tool outputs** | | {before:,} | {after_:,} | {100 * (1 - after_ / before):.1f} % | |",
                  f"| **total, whole requests** | | {rb:,} | {ra:,} | {100 * (1 - ra / rb):.1f} % | |", ""]
    lines += ["## LLMLingua-2 backends", ""]
    lingua = data.get("llmlingua")
    if lingua and lingua.get("cells"):
        if "llmlingua" in made:
            lines += [f"![LLMLingua backends]({made['llmlingua']})", ""]
        lines += ["From `load_tests/bench_llmlingua.py --json` (its own run; see that script for the method).", ""]
        lines += _lingua_setup(lingua)
        lines += ["| backend | size | clients | n | p50 ms | p99 ms | tokens/s |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for c in lingua["cells"]:
            lines.append(f"| {c['engine']} | {c['size']} | {c['concurrency']} | {c.get('n', '–')} "
                         f"| {fmt(c.get('p50_ms'), 1)} | {fmt(c.get('p99_ms'), 1)} | {fmt(c.get('tokens_per_s'))} |")
        lines += [""] + [f"- **{v['status']}** {v['target']}: {v['detail']}" for v in lingua.get("verdicts", [])]
        lines += [""]
    else:
        lines += [f"Skipped: {data.get('llmlingua_skipped', 'no JSON')}. Produce it with "
                  "`python load_tests/bench_llmlingua.py --json docs/llmlingua.json`, then rerun this report.", ""]
    lines += ["## Reproduce", "", "```sh",
              "python load_tests/original_headroom.py --venv /tmp/orig-venv   # once: the original, own venv",
              "TIKTOKEN_CACHE_DIR=.tiktoken python load_tests/report.py [--quick] [--original-venv /tmp/orig-venv]",
              "```", "", f"Parameters of this run: `{json.dumps(data.get('params', {}))}`", ""]
    return "\n".join(lines)


def _lingua_setup(lingua: dict) -> list[str]:
    """What the LLMLingua numbers were measured with: the model's tokens per cl100k token on
    the texts (the random model's vocabulary decides how many tokens a text costs), and the
    threads the model servers ran with."""
    texts = lingua.get("texts") or {}
    model = sum(t.get("model_tokens", 0) for t in texts.values())
    cl100k = sum(t.get("cl100k", 0) for t in texts.values())
    args = lingua.get("args") or {}
    cpus = (lingua.get("host") or {}).get("cpus")
    device = args.get("device", "cpu")
    default = f"the default, cores − 1 = {max(1, cpus - 1)}" if cpus and device == "cpu" else "the default"
    ratio = f", {model / cl100k:.2f} model tokens per cl100k token on the benchmark's English texts" if cl100k else ""
    line = (f"Model: `{Path(str(args.get('model', 'the model'))).name}`{ratio}. Model servers on {device} with "
            f"{args.get('threads') or default} intra-op thread(s); llmlingua's own `compress_prompt` with torch's "
            f"default threads (all {cpus or '?'} cores).")
    return [line, ""]


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short phases (about 2 minutes in all)")
    p.add_argument("--concurrency", type=bench.int_list, help="connection counts (default 1,8,32,64; quick 1,16,64)")
    p.add_argument("--seconds", type=float, help="seconds per target and concurrency (default 4; quick 1.5)")
    p.add_argument("--requests", type=int, help="latency samples per target at 1 connection (default 2000)")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds of the 1-connection latency")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--reps", type=int, help="cold starts per server (default 3; quick 1)")
    p.add_argument("--idle-seconds", type=float, default=3.0,
                   help="idle wait before reading RSS (a worker loads its tokenizers in the first seconds)")
    p.add_argument("--max-requests", type=int, default=1_000_000, help="hard cap per load phase")
    p.add_argument("--max-phase-seconds", type=float, default=60.0, help="hard cap per latency phase")
    p.add_argument("--startup-timeout", type=float, default=60.0)
    p.add_argument("--targets", default=",".join(LABELS), help=f"comma list of {','.join(LABELS)}")
    p.add_argument("--original-venv", type=Path, default=original_headroom.DEFAULT_VENV,
                   help="virtual environment holding headroom-ai 0.42.0 (skipped when absent)")
    p.add_argument("--install-original", action="store_true", help="create --original-venv when missing")
    p.add_argument("--bench-json", type=Path, help="take the proxy numbers from `bench.py --json` instead")
    p.add_argument("--llmlingua-json", type=Path, default=DOCS / "llmlingua.json")
    p.add_argument("--from-json", type=Path, help="re-render a run saved with --save-json; measure nothing")
    p.add_argument("--save-json", type=Path, help="write every measured number here (default: benchmarks.json "
                                                  "in --out)")
    p.add_argument("--readme", type=Path, help="rewrite this README's headline block from the run (default: the "
                                               "repository's README.md when --out is docs/)")
    p.add_argument("--skip-startup", action="store_true")
    p.add_argument("--skip-corpus", action="store_true")
    p.add_argument("--out", type=Path, default=DOCS, help="folder for benchmarks.md and the charts")
    args = p.parse_args(argv)
    q = args.quick
    args.concurrency = args.concurrency or ([1, 16, 64] if q else [1, 8, 32, 64])
    args.seconds = args.seconds or (1.5 if q else 4.0)
    args.requests = args.requests or (400 if q else 2000)
    args.reps = args.reps or (1 if q else 3)
    if q:
        args.rounds, args.warmup = min(args.rounds, 2), min(args.warmup, 50)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(LABELS)
    if unknown:
        p.error(f"unknown targets: {sorted(unknown)}")
    args.variants = dict(bench.VARIANTS)
    args.save_json = args.save_json or args.out / "benchmarks.json"
    if args.readme is None and args.out.resolve() == DOCS.resolve():
        args.readme = ROOT / "README.md"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        why = None
        if "original" in args.targets:
            why = original_headroom.available(args.original_venv)
            if why and args.install_original:
                log(f"installing the original into {args.original_venv}...")
                why = original_headroom.install(args.original_venv)
            if why:
                log(f"original Headroom skipped: {why}")
                args.targets.remove("original")
        args.original_ok = "original" in args.targets
        data = {"machine": machine(), "quick": args.quick, "original_skipped": why,
                "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                           if k in ("concurrency", "seconds", "requests", "rounds", "warmup", "reps", "targets")}}
        try:
            data.update((bench.uvloop.run if bench.uvloop else asyncio.run)(measure(args)))
        except RuntimeError as exc:
            log(f"measurement failed: {exc}")
            return 1
        if not args.skip_corpus:
            log("corpus...")
            data["corpus"] = corpus()
        data["machine"]["loadavg_end"] = os.getloadavg()
    if args.llmlingua_json and args.llmlingua_json.is_file():
        data["llmlingua"] = json.loads(args.llmlingua_json.read_text())
    elif not data.get("llmlingua"):
        shown = args.llmlingua_json.resolve()
        with suppress(ValueError):
            shown = shown.relative_to(ROOT)
        data["llmlingua_skipped"] = f"`{shown}` is absent"
    data["verdicts"] = verdicts(data)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.save_json.resolve() != (args.from_json.resolve() if args.from_json else None):
        args.save_json.write_text(json.dumps(data, indent=2, default=str) + "\n")
    if args.readme:
        args.readme.write_text(replace_headline(args.readme.read_text(), data))
    made = charts(data, args.out)
    (args.out / "benchmarks.md").write_text(markdown(data, made))
    for v in data["verdicts"]:
        print(f"{v['status']:4s} {v['target']}: {v['detail']}")
    log(f"wrote {args.out / 'benchmarks.md'} and {len(made)} charts in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
