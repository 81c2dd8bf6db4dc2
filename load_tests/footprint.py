"""Start-up time and idle memory of ``headroom proxy``, median of several launches.

For each configuration: launch the real CLI against the mock upstream, time launch to the
first 200 on ``/health`` (polled every 10 ms), wait for ``/readyz`` (the tokenizer loaded),
let it settle, then read every process the proxy started (its descendants, the private Redis
included): RSS (``VmRSS``) and PSS (``Pss`` of ``/proc/PID/smaps_rollup``).

Why both: workers forked from a main process share its pages copy-on-write (the tokenizer's
tables among them), and RSS counts a shared page once in every process that maps it; PSS
divides it among them, so the PSS sum is what the processes take from the machine together.

    python load_tests/footprint.py                 # default, every feature, --workers 4; 5 launches
    python load_tests/footprint.py -n 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from testkit import processes
from testkit.ports import free_port
from testkit.services import proxy_command, start_mock, stop
from testkit.waiting import wait_for

_NO_REFUSALS = "--rpm 1000000000 --tpm 1000000000000"
CONFIGS = {
    "default": "",  # one worker, default features
    "every-feature": _NO_REFUSALS,
    "every-feature-4w": f"{_NO_REFUSALS} --workers 4",
}


def pss_mb(pid: int) -> float | None:
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return None


def role(pid: int, root: int, workers: set[int]) -> str:
    """What a process is: workers are the pids Sanic announced ("Worker ready [pid]"); a
    forked process shares its parent's command line and environment, so those cannot tell."""
    if pid == root:
        return "main"
    if pid in workers:
        return "worker"
    with suppress(OSError):
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"redis-server" in cmd:
            return "redis"
        if b"resource_tracker" in cmd:
            return "resource-tracker"
        if b"model-server" in cmd:
            return "model-server"
    return "sanic-manager"


def snapshot(root: int, workers: set[int]) -> list[dict]:
    out = []
    for pid in processes.descendants(root):
        rss, pss = processes.rss_mb(pid), pss_mb(pid)
        if rss is not None and pss is not None:
            out.append({"pid": pid, "role": role(pid, root, workers), "rss_mb": rss, "pss_mb": pss})
    return out


def one_launch(mock_url: str, flags: str, settle_s: float, folder: Path) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(folder / f"proxy-{port}.log", "w") as log:
        launched = time.monotonic()
        proc = subprocess.Popen(proxy_command(port, mock_url, *shlex.split(flags)), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with httpx.Client(timeout=1) as client:
            def healthy() -> bool:
                assert proc.poll() is None, (folder / f"proxy-{port}.log").read_text()[-2000:]
                with suppress(httpx.HTTPError):
                    return client.get(f"{url}/health").status_code == 200
                return False

            wait_for(healthy, timeout=30, interval=0.01, what="/health")
            health_s = time.monotonic() - launched
            wait_for(lambda: client.get(f"{url}/readyz", timeout=10).status_code == 200, timeout=30,
                     interval=0.05, what="/readyz")
            ready_s = time.monotonic() - launched
        time.sleep(settle_s)
        workers = processes.live_workers((folder / f"proxy-{port}.log").read_text())
        return {"health_s": health_s, "ready_s": ready_s, "processes": snapshot(proc.pid, workers)}
    finally:
        stop(proc)


def summarise(name: str, runs: list[dict]) -> dict:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    last = runs[-1]["processes"]
    workers = [p for p in last if p["role"] == "worker"] or [p for p in last if p["role"] == "main"]
    return {
        "config": name, "launches": len(runs),
        "health_s": med([r["health_s"] for r in runs]), "health_all_s": [round(r["health_s"], 3) for r in runs],
        "ready_s": med([r["ready_s"] for r in runs]),
        "rss_total_mb": med([sum(p["rss_mb"] for p in r["processes"]) for r in runs]),
        "pss_total_mb": med([sum(p["pss_mb"] for p in r["processes"]) for r in runs]),
        "worker_rss_mb": [round(p["rss_mb"], 1) for p in workers],
        "worker_pss_mb": [round(p["pss_mb"], 1) for p in workers],
        "processes": [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in p.items()} for p in last],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--launches", type=int, default=5)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {','.join(CONFIGS)}")
    parser.add_argument("--settle", type=float, default=2.0, help="idle seconds before reading memory")
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--source", action="store_true",
                        help="leave headroom's bytecode as it is (default: compile it first, as pip does at "
                             "install, so that a machine with PYTHONDONTWRITEBYTECODE=1 does not time compiling)")
    args = parser.parse_args(argv)
    if not args.source:
        import compileall

        compileall.compile_dir(Path(__file__).resolve().parent.parent / "headroom", quiet=1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        mock = start_mock(folder / "mock.log")
        try:
            for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
                runs = [one_launch(mock.url, CONFIGS[name], args.settle, folder) for _ in range(args.launches)]
                results.append(summarise(name, runs))
                r = results[-1]
                print(f"{name:18} /health {r['health_s']:.2f} s (all {r['health_all_s']})  /readyz {r['ready_s']:.2f} s"
                      f"  all processes: RSS {r['rss_total_mb']:.1f} MB, PSS {r['pss_total_mb']:.1f} MB  "
                      f"worker RSS {r['worker_rss_mb']} PSS {r['worker_pss_mb']}", flush=True)
                for p in r["processes"]:
                    print(f"    {p['role']:17} pid {p['pid']:>7}  RSS {p['rss_mb']:6.1f}  PSS {p['pss_mb']:6.1f}")
        finally:
            stop(mock.proc)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
