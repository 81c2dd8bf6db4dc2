"""The upstream client alone: Headroom's HTTP/1.1 pool against aiohttp's client, CPU per
request and requests per second, in one process, in interleaved rounds.

Both send bench.py's request to the mock upstream from the same event loop (uvloop when
installed, as the proxy's workers), ``--connections`` at a time, and read each answer whole;
what differs is only the client. The mock runs in its own process: the CPU counted here is
the client's and its loop's.

    python load_tests/bench_client.py --seconds 12 --rounds 4
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from headroom.proxy import http1  # noqa: E402
from load_tests.bench import BODY, HEADERS, unique  # noqa: E402
from testkit.services import start_mock, stop  # noqa: E402

SEND = [(name, value) for name, value in HEADERS.items()] + [("accept-encoding", "gzip, deflate")]


class Client:
    """One way to send the request and read the answer."""

    name = ""

    async def start(self) -> None: ...

    async def open(self, url: str) -> Any:
        """Send the request; the answer once its head arrived (``status``, ``content``, ``release()``)."""

    async def call(self, url: str) -> int:
        resp = await self.open(url)
        try:
            while await resp.content.readany():
                pass
            return resp.status
        finally:
            resp.release()

    async def close(self) -> None: ...


class Aiohttp(Client):
    name = "aiohttp"

    async def start(self) -> None:  # configured as Headroom's upstream client was
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=600), auto_decompress=True,
            cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent", "Accept", "Content-Type"),
            raise_for_status=False)

    async def open(self, url: str) -> Any:
        return await self.session.request("POST", url, headers=SEND, data=unique(BODY), allow_redirects=False,
                                          compress=None)

    async def close(self) -> None:
        await self.session.close()


class Http1(Client):
    name = "headroom http1"

    async def start(self) -> None:
        self.pool = http1.Pool(connect_timeout=10, read_timeout=600)

    async def open(self, url: str) -> Any:
        return await self.pool.request("POST", url, SEND, unique(BODY))

    async def close(self) -> None:
        await self.pool.close()


async def hammer(client: Client, url: str, connections: int, seconds: float) -> tuple[int, float, float]:
    """Requests done, wall seconds and process CPU seconds over ``seconds``."""
    done = 0

    async def worker(deadline: float) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            if await client.call(url) == 200:
                done += 1

    await asyncio.gather(*(worker(time.perf_counter() + 0.5) for _ in range(connections)))  # warm
    done = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(t0 + seconds) for _ in range(connections)))
    return done, time.perf_counter() - t0, time.process_time() - cpu0


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    clients: list[Client] = [Aiohttp(), Http1()]
    totals = {c.name: [0, 0.0, 0.0] for c in clients}
    for c in clients:
        await c.start()
    try:
        for r in range(args.rounds):
            for c in clients:
                done, wall, cpu = await hammer(c, url, args.connections, args.seconds / args.rounds)
                t = totals[c.name]
                t[0], t[1], t[2] = t[0] + done, t[1] + wall, t[2] + cpu
                print(f"round {r + 1}: {c.name}: {done / wall:.0f} req/s, {1e6 * cpu / max(done, 1):.0f} µs CPU/req",
                      file=sys.stderr, flush=True)
    finally:
        for c in clients:
            await c.close()
    return {name: {"rps": d / w, "cpu_us": 1e6 * c / max(d, 1)} for name, (d, w, c) in totals.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--seconds", type=float, default=12.0, help="in all, per client")
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        mock = start_mock(Path(tmp) / "mock.log")
        try:
            try:
                import uvloop
                results = uvloop.run(run(args, mock.url + "/v1/messages"))
            except ImportError:
                results = asyncio.run(run(args, mock.url + "/v1/messages"))
        finally:
            stop(mock.proc) if mock.proc else None
    base = results["aiohttp"]
    for name, r in results.items():
        print(f"{name}: {r['rps']:.0f} req/s ({r['rps'] / base['rps']:.2f}x), "
              f"{r['cpu_us']:.0f} µs CPU per request ({r['cpu_us'] / base['cpu_us']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
