"""Run the locust scenarios (``load_tests/locustfile.py``) against a full local deployment.

Starts, all on 127.0.0.1 and free ports:

- the mock upstream with a model-like pace (``--ttft-ms``, ``--tokens-per-s``),
- a real ``redis-server`` (:class:`testkit.services.RedisProc`),
- ``headroom proxy --workers N`` with every feature on: shared state in that Redis, response
  cache, compression, CCR, per-key rate limit and per-key budget (the values the scenarios
  expect, :data:`locustfile.EXPECTED_LIMITS`: the burst users run into them, the sessions do not),
  request log file and admin token,

then ``locust --headless`` bounded in users and run time, writes the CSVs, the proxy's
``/stats``, the scenario counters and a summary into ``--out``, and stops everything.
Exits non-zero on any failed request or broken stream, on a user class that did not run,
or when no burst met a limit.  429s from Headroom's own limits in the burst class are
expected answers and count as successes.

The documented load (about 75 s on a 2-core machine)::

    python load_tests/run.py --workers 2 --users 12 --spawn-rate 4 --run-time 60s --out load_out

Needs ``locust`` (``pip install -e '.[test]'``) and ``redis-server`` on the PATH.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from testkit import processes  # noqa: E402
from testkit.ports import free_port  # noqa: E402
from testkit.services import REDIS_BIN, RedisProc, start_proxy, stop, wait_until_ready  # noqa: E402

LOCUSTFILE = HERE / "locustfile.py"
CLASSES = {"cc": "ClaudeCodeSession", "openai": "OpenAIChat", "burst": "KeyBurst"}  # name prefix -> user class
RPM = 30  # locustfile.EXPECTED_LIMITS (not imported: importing the locustfile monkey-patches via gevent)
BUDGET_USD = 3.0
ADMIN_TOKEN = "load-admin-token"


def seconds(text: str) -> float:
    """Locust's run-time syntax: 90, 90s, 2m, 1m30s, 1h."""
    if text.isdigit():
        return float(text)
    parts = re.findall(r"(\d+)\s*([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise argparse.ArgumentTypeError(f"bad run time {text!r} (use e.g. 30s, 2m, 1m30s)")
    return float(sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts))


def start_mock(out: Path, ttft_ms: float, tokens_per_s: float) -> tuple[str, subprocess.Popen]:
    port = free_port()
    log = out / "mock.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "testkit.mock_upstream", "--port", str(port),
                                 "--ttft-ms", str(ttft_ms), "--tokens-per-s", str(tokens_per_s)],
                                stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/_mock/stats", proc, log)
    except Exception:
        stop(proc)
        raise
    return url, proc


def process_rss(root: int) -> dict[str, float]:
    """RSS in MB of ``root`` and each of its descendants, named by role (main, worker-PID, ...)."""
    sizes = {}
    for pid in processes.descendants(root):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        rss = processes.rss_mb(pid)
        if rss is None or b"resource_tracker" in cmdline:
            continue
        role = ("main" if pid == root else "model-server" if b"model-server" in cmdline
                else "redis" if b"redis-server" in cmdline else "worker" if b"spawn_main" in cmdline else "other")
        sizes[f"{role}-{pid}" if role != "main" else role] = rss
    return sizes


class RssSampler:
    """A thread writing ``seconds,process,rss_mb`` rows every ``every`` seconds (soak runs)."""

    def __init__(self, root: int, path: Path, every: float) -> None:
        import threading

        self._root, self._path, self._every = root, path, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        began = time.monotonic()
        with open(self._path, "w", newline="") as f:
            rows = csv.writer(f)
            rows.writerow(["seconds", "process", "rss_mb"])
            while True:
                now = round(time.monotonic() - began, 1)
                for name, mb in process_rss(self._root).items():
                    rows.writerow([now, name, f"{mb:.1f}"])
                f.flush()
                if self._stop.wait(self._every):
                    return


def wait_for_model(url: str, timeout_s: float = 120) -> None:
    """Until ``/health`` says the model is ready: the run measures compression, not loading."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = httpx.get(f"{url}/health", timeout=5).json().get("llmlingua")
        if state == "ready":
            return
        if state == "failed":
            raise RuntimeError("the LLMLingua model failed to load (see proxy.log)")
        time.sleep(0.25)
    raise RuntimeError(f"the LLMLingua model was not ready within {timeout_s:.0f} s")


def warm_up_model(url: str) -> None:
    """Prose tool results through the proxy before the run: a model's first forward passes
    are slow (allocations, kernel selection), and the run should measure the steady state."""
    from testkit.corpus.cases import all_cases

    prose = next(case for case in all_cases() if case.name == "docs_page_prose")
    for variant in (prose.content, "\n".join(reversed(prose.content.splitlines()))):  # two: no memo hit
        body = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [
            {"role": "user", "content": prose.question},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "warm", "name": prose.tool,
                                               "input": prose.tool_input}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "warm", "content": variant}]}]}
        httpx.post(f"{url}/v1/messages", json=body, headers={"x-api-key": "sk-warm-up"}, timeout=60)


def model_compressions(url: str) -> float:
    """``headroom_llmlingua_compressions_total`` from ``/metrics``, summed over the workers."""
    body = httpx.get(f"{url}/metrics", headers={"x-headroom-admin-token": ADMIN_TOKEN}, timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith("headroom_llmlingua_compressions_total"))


def read_stats(path: Path) -> list[dict]:
    """Rows of locust's ``*_stats.csv`` (without the Aggregated row)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if row.get("Name") != "Aggregated"]


def summarize(rows: list[dict], counters: dict, proxy_stats: dict | None) -> dict:
    per_name = []
    for row in rows:
        per_name.append({"type": row["Type"], "name": row["Name"], "requests": int(row["Request Count"]),
                         "failures": int(row["Failure Count"]), "p50_ms": row.get("50%"),
                         "p95_ms": row.get("95%"), "rps": row.get("Requests/s")})
    real = [r for r in per_name if r["type"] != "SSE"]  # SSE rows repeat successful streams' timing
    per_class = {prefix: sum(r["requests"] for r in real if r["name"].startswith(prefix + ":"))
                 for prefix in CLASSES}
    summary = {
        "requests": sum(r["requests"] for r in real),
        "failures": sum(r["failures"] for r in per_name),
        "per_class": per_class,
        "per_name": per_name,
        "counters": counters,
    }
    if proxy_stats is not None:
        summary["proxy_stats"] = proxy_stats
    return summary


def print_summary(summary: dict) -> None:
    print(f"\n{'type':6s} {'name':34s} {'requests':>9s} {'failures':>9s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for r in summary["per_name"]:
        print(f"{r['type']:6s} {r['name']:34s} {r['requests']:>9d} {r['failures']:>9d} "
              f"{r['p50_ms'] or '-':>8s} {r['p95_ms'] or '-':>8s}")
    print(f"\nrequests {summary['requests']}, failures {summary['failures']}, per class {summary['per_class']}")
    print(f"counters {json.dumps(summary['counters'], sort_keys=True)}")


def problems(summary: dict, locust_rc: int, min_per_class: int) -> list[str]:
    found = []
    if summary["failures"]:
        found.append(f"{summary['failures']} failed requests")
    if locust_rc != 0:
        found.append(f"locust exited with {locust_rc}")
    for prefix, n in summary["per_class"].items():
        if n < min_per_class:
            found.append(f"user class {CLASSES[prefix]} made {n} requests (< {min_per_class})")
    counters = summary["counters"]
    stats = summary.get("proxy_stats") or {}
    if "llmlingua_compressions" in stats and not stats["llmlingua_compressions"]:
        found.append(f"LLMLingua compressed nothing (fallbacks: {stats.get('llmlingua_fallbacks')})")
    if summary["per_class"].get("burst") and not (counters.get("burst_429_rpm") or counters.get("burst_429_budget")):
        found.append("the bursts never met a limit (no 429)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="proxy worker processes (default 2)")
    parser.add_argument("--users", type=int, default=12, help="concurrent locust users (default 12)")
    parser.add_argument("--spawn-rate", type=float, default=4, help="users started per second (default 4)")
    parser.add_argument("--run-time", default="60s", help="how long locust runs, e.g. 30s, 2m (default 60s)")
    parser.add_argument("--out", type=Path, default=Path("load_out"), help="folder for CSVs, logs, summary")
    parser.add_argument("--ttft-ms", type=float, default=300, help="mock model: time to first token (default 300)")
    parser.add_argument("--tokens-per-s", type=float, default=80, help="mock model: output tokens/s (default 80)")
    parser.add_argument("--llmlingua", metavar="MODEL",
                        help="also compress prose with LLMLingua-2 (this model: hub name or folder), in the "
                             "proxy's own model server; the run then fails unless the model compressed something")
    parser.add_argument("--rss-every", type=float, default=0, metavar="S",
                        help="sample the RSS of the proxy's processes every S seconds into rss.csv (soak runs)")
    parser.add_argument("--min-per-class", type=int, default=1,
                        help="fail unless every user class made at least this many requests (default 1)")
    args = parser.parse_args(argv)
    run_s = seconds(args.run_time)
    if run_s > 1800:
        parser.error("--run-time is capped at 30 minutes")
    if REDIS_BIN is None:
        print("redis-server is not installed", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT / ".tiktoken"))

    redis = RedisProc()
    mock_proc = proxy = locust = None
    locust_rc = -1
    proxy_stats = None
    try:
        redis.start()
        mock_url, mock_proc = start_mock(out, args.ttft_ms, args.tokens_per_s)
        proxy = start_proxy(out / "proxy.log", mock_url, "--workers", str(args.workers),
                            "--redis-url", redis.url, "--rpm", str(RPM), "--budget", str(BUDGET_USD),
                            "--budget-period", "hourly", "--budget-scope", "key",
                            "--log-file", str(out / "requests.jsonl"), "--admin-token", ADMIN_TOKEN,
                            *(("--llmlingua", "--llmlingua-model", args.llmlingua) if args.llmlingua else ()),
                            timeout=60)
        if args.llmlingua:
            wait_for_model(proxy.url)
            warm_up_model(proxy.url)
            compressions_before = model_compressions(proxy.url)
        print(f"mock {mock_url} (ttft {args.ttft_ms} ms, {args.tokens_per_s} tokens/s), redis {redis.url}, "
              f"proxy {proxy.url} ({args.workers} workers)", flush=True)
        counters_file = out / "counters.json"
        counters_file.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "HEADROOM_LOAD_COUNTERS": str(counters_file),
               "HEADROOM_LOCUST_HARD_LIMIT_S": str(run_s + 30)}
        cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", proxy.url,
               "-u", str(args.users), "-r", str(args.spawn_rate), "--run-time", f"{int(run_s)}s",
               "--stop-timeout", "15", "--csv", str(out / "locust"), "--only-summary",
               "--loglevel", "WARNING", *CLASSES.values()]
        sampler = RssSampler(proxy.proc.pid, out / "rss.csv", args.rss_every) if args.rss_every else None
        with open(out / "locust.log", "w") as log:
            locust = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
            if sampler:
                sampler.start()
            try:
                locust_rc = locust.wait(timeout=run_s + 90)
            except subprocess.TimeoutExpired:
                print("locust did not stop in time; killed", file=sys.stderr)
                stop(locust)
                locust_rc = -9
            finally:
                if sampler:
                    sampler.stop()
        try:
            proxy_stats = httpx.get(f"{proxy.url}/stats", headers={"x-headroom-admin-token": ADMIN_TOKEN},
                                    timeout=5).json()
            (out / "proxy_stats.json").write_text(json.dumps(proxy_stats, indent=1))
            if args.llmlingua:
                proxy_stats["llmlingua_compressions"] = model_compressions(proxy.url) - compressions_before
        except (httpx.HTTPError, ValueError) as exc:
            print(f"could not read the proxy's /stats: {exc}", file=sys.stderr)
    finally:
        if locust is not None:
            stop(locust)
        if proxy is not None:
            stop(proxy.proc)
        if mock_proc is not None:
            stop(mock_proc)
        redis.close()

    counters = json.loads(counters_file.read_text()) if counters_file.exists() else {}
    summary = summarize(read_stats(out / "locust_stats.csv"), counters, proxy_stats)
    summary["locust_rc"] = locust_rc
    summary["args"] = {k: str(v) for k, v in vars(args).items()}
    summary["problems"] = problems(summary, locust_rc, args.min_per_class)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print_summary(summary)
    failures_csv = out / "locust_failures.csv"
    if summary["failures"] and failures_csv.exists():
        print("\nfailures:\n" + failures_csv.read_text()[:4000])
    if summary["problems"]:
        print(f"\nFAILED: {'; '.join(summary['problems'])} (logs in {out})")
        return 1
    print(f"\nOK (CSV, logs and summary.json in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
