"""Latency of one guard call (rate-limit buckets + budget reservation) per store.

Starts its own redis-server (127.0.0.1 on a free port, plus a Unix socket in a private
temporary directory; nothing persisted) and measures, one call at a time:

* memory        MemoryStore.guard
* redis-tcp     RedisStore.guard over TCP       (one EVALSHA round trip)
* redis-unix    RedisStore.guard over the socket (what --workers N gets by default)

plus, for reference, a bare PING through the same client (the floor for any Redis
call) and the other per-request store calls (settle, cache_get miss).

    python load_tests/bench_store.py                 # 5000 calls each, uvloop if present
    python load_tests/bench_store.py -n 20000 --asyncio --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from headroom.state.memory_store import MemoryStore
from headroom.state.redis_store import RedisStore
from headroom.state.store import GuardRequest
from testkit.services import RedisProc

REQ = GuardRequest("bench0caller0hash", rpm=10**7, tpm=10**10, tokens=1200,
                   budget_usd=10**7, cost_usd=0.02, period="daily", budget_scope="key")


async def measure(call, n: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        await call()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        start = clock()
        await call()
        samples.append((clock() - start) / 1000)
    samples.sort()
    return {
        "p50_us": round(samples[len(samples) // 2], 1),
        "p99_us": round(samples[int(len(samples) * 0.99)], 1),
        "mean_us": round(statistics.fmean(samples), 1),
    }


async def run(n: int, warmup: int, port: int, sock: str) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    memory = MemoryStore()
    results["memory guard"] = await measure(lambda: memory.guard(REQ), n, warmup)
    allowed = await memory.guard(REQ)
    results["memory settle"] = await measure(lambda: memory.settle(allowed, 1000, 0.01), n, warmup)
    for name, url in (("redis-tcp", f"redis://127.0.0.1:{port}/0"), ("redis-unix", f"unix://{sock}")):
        store = RedisStore(url)
        try:
            results[f"{name} PING (floor)"] = await measure(partial(store._run, "PING"), n, warmup)
            results[f"{name} guard"] = await measure(partial(store.guard, REQ), n, warmup)
            charged = await store.guard(REQ)
            results[f"{name} settle"] = await measure(partial(store.settle, charged, 1000, 0.01), n, warmup)
            results[f"{name} cache_get miss"] = await measure(partial(store.cache_get, "bench", "absent"), n, warmup)
        finally:
            await store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5000, help="measured calls per case")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--asyncio", action="store_true", help="plain asyncio loop instead of uvloop")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    loop_name = "asyncio"
    if not args.asyncio:
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            loop_name = "uvloop"
        except ImportError:
            pass
    redis = RedisProc()  # the product's own launcher (headroom.workers.redis_server)
    redis.start()
    try:
        results = asyncio.run(run(args.n, args.warmup, redis.port, redis.sock))
    finally:
        redis.close()

    print(f"{args.n} sequential calls per case, {loop_name}, {os.cpu_count()} CPUs")
    print(f"{'case':32} {'p50 µs':>9} {'p99 µs':>9} {'mean µs':>9}")
    for case, r in results.items():
        print(f"{case:32} {r['p50_us']:9.1f} {r['p99_us']:9.1f} {r['mean_us']:9.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"loop": loop_name, "n": args.n, "results": results}, indent=2))


if __name__ == "__main__":
    main()
