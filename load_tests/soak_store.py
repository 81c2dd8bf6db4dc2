"""Store soak: does a worker's memory stay flat while stored state keeps arriving?

Each request carries a unique ~25 KB JSON tool output (so the pipeline stores a new memo
entry and a new original every time); one in four re-sends an earlier body (memo and cache
hits). Runs the real CLI proxy (``--workers 1``, memory store unless flags say otherwise)
against the mock upstream, loopback only, bounded in time and in requests, and prints the
worker's RSS every ``--every`` seconds:

    python load_tests/soak_store.py                         # 3 minutes, default --store-max-mb
    python load_tests/soak_store.py --seconds 60 --flags="--store-max-mb 16"

With state bounded by bytes (``--store-max-mb``) the curve levels off once the store is full;
bounded by entry count only, it kept rising for minutes. ``tests/test_soak_short.py`` is the
short version in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from testkit import processes  # noqa: E402
from testkit.services import start_mock, start_proxy, stop  # noqa: E402
from testkit.waiting import wait_for  # noqa: E402

HEADERS = {"content-type": "application/json", "x-api-key": "sk-ant-soak", "anthropic-version": "2023-06-01"}
RESEND_EVERY = 4  # one request in four re-sends an earlier body
KEEP_FOR_RESEND = 256  # bodies remembered for re-sending (the client's own memory stays bounded)


def tool_output(serial: int, size: int = 25_000) -> str:
    """A unique JSON tool output of about ``size`` bytes: rows a JSON compressor can shorten."""
    rng = random.Random(serial)
    statuses = ("ok", "warn", "fail")
    rows = [{"id": f"{serial}-{i}", "path": f"src/mod_{rng.randrange(10**6)}.py", "status": statuses[i % 3],
             "lines": rng.randrange(10**4), "note": rng.randbytes(20).hex()}
            for i in range(size // 128)]  # a row is about 128 bytes of JSON
    return json.dumps(rows)


def request_body(serial: int) -> bytes:
    """An Anthropic request whose last turn returns the tool output ``serial``."""
    return json.dumps({
        "model": "claude-sonnet-4-5", "max_tokens": 32,
        "messages": [
            {"role": "user", "content": f"List the failing files ({serial})."},
            {"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_{serial}", "name": "scan",
                                               "input": {"dir": "src"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{serial}",
                                          "content": tool_output(serial)}]},
        ],
    }).encode()


@dataclass
class Curve:
    """What a soak saw: (seconds since start, worker RSS in MiB) and the request counts."""

    samples: list[tuple[float, float]] = field(default_factory=list)
    sent: int = 0
    failed: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


async def _load(url: str, deadline: float, max_requests: int, concurrency: int, curve: Curve) -> None:
    recent: list[bytes] = []
    serials = iter(range(max_requests))

    async def client(http: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            serial = next(serials, None)
            if serial is None:
                return
            if serial % RESEND_EVERY == RESEND_EVERY - 1 and recent:
                body = recent[serial % len(recent)]
            else:
                body = request_body(serial)
                recent.append(body)
                if len(recent) > KEEP_FOR_RESEND:
                    del recent[0]
            try:
                r = await http.post(f"{url}/v1/messages", content=body, headers=HEADERS)
                curve.statuses[r.status_code] = curve.statuses.get(r.status_code, 0) + 1
                curve.failed += r.status_code != 200
            except httpx.HTTPError:
                curve.failed += 1
            curve.sent += 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))


OnSample = Callable[[float, float, int], None]  # seconds, RSS MiB, requests sent so far


async def _sample(pid: int, start: float, load: asyncio.Task, every: float, curve: Curve,
                  on_sample: OnSample | None) -> None:
    """RSS every ``every`` seconds while the load runs, and once more when it is over."""
    while True:
        mb = processes.rss_mb(pid)
        if mb is None:
            return
        at = time.monotonic() - start
        curve.samples.append((at, mb))
        if on_sample is not None:
            on_sample(at, mb, curve.sent)
        if load.done():
            return
        await asyncio.wait({load}, timeout=every)


def worker_pid(proxy) -> int:
    """The one HTTP worker of a ``--workers 1`` proxy (it announces itself in its output)."""
    return wait_for(lambda: next(iter(processes.live_workers(proxy.output())), None), timeout=20, what="worker")


def soak(seconds: float, *, flags: tuple[str, ...] = (), every: float = 10.0, concurrency: int = 8,
         max_requests: int = 200_000, on_sample: OnSample | None = None, workdir: Path | None = None) -> Curve:
    """Run one soak and return its curve; every process it started is stopped again."""
    directory = Path(tempfile.mkdtemp(prefix="hr-soak-")) if workdir is None else workdir
    try:
        return _soak(directory, seconds, flags, every, concurrency, max_requests, on_sample)
    finally:
        if workdir is None:
            shutil.rmtree(directory, ignore_errors=True)


def _soak(directory: Path, seconds: float, flags: tuple[str, ...], every: float, concurrency: int,
          max_requests: int, on_sample: OnSample | None) -> Curve:
    mock = start_mock(directory / "mock.log")
    try:
        proxy = start_proxy(directory / "proxy.log", mock.url, "--workers", "1", "--no-rate-limit", *flags)
        try:
            pid = worker_pid(proxy)
            curve = Curve()

            async def main() -> None:
                start = time.monotonic()
                deadline = start + seconds
                load = asyncio.create_task(_load(proxy.url, deadline, max_requests, concurrency, curve))
                await _sample(pid, start, load, every, curve, on_sample)
                await load

            asyncio.run(main())
            return curve
        finally:
            stop(proxy.proc)
    finally:
        assert mock.proc is not None
        stop(mock.proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--every", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--flags", default="", help="extra proxy flags, e.g. '--store-max-mb 64'")
    args = parser.parse_args(argv)
    curve = soak(args.seconds, flags=tuple(shlex.split(args.flags)), every=args.every,
                 concurrency=args.concurrency, max_requests=args.max_requests,
                 on_sample=lambda at, mb, sent: print(f"{at:6.0f} s  {mb:7.1f} MB  {sent:7d} requests", flush=True))
    elapsed = curve.samples[-1][0] if curve.samples else 0.0
    print(f"{curve.sent} requests ({curve.sent / max(elapsed, 1e-9):.0f}/s), {curve.failed} failed, "
          f"statuses {curve.statuses}")
    return 0 if curve.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
