"""Bare aiohttp pass-through: the "physical limit" reference for bench.py.

It does the least any Python proxy must do -- accept, forward with one pooled
ClientSession, stream the answer back -- so Headroom's throughput is judged
against what an aiohttp-based hop costs on the same machine, not against zero.

    python load_tests/bare_passthrough.py --port 0 --upstream http://127.0.0.1:M
"""

import argparse
import asyncio
import signal

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

HOP = {"host", "connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}
REQ_DROP = HOP | {"content-length"}  # aiohttp recomputes it for the forwarded body


async def main(host: str, port: int, upstream: str) -> None:
    session = ClientSession(connector=TCPConnector(limit=0), auto_decompress=False,
                            timeout=ClientTimeout(total=None, sock_connect=10))

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in REQ_DROP}
        async with session.request(request.method, upstream + request.raw_path, headers=headers,
                                   data=await request.read(), allow_redirects=False) as up:
            resp = web.StreamResponse(status=up.status, reason=up.reason,
                                      headers={k: v for k, v in up.headers.items() if k.lower() not in HOP})
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    print(f"bare passthrough listening on http://{host}:{runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await session.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="minimal aiohttp reverse proxy (benchmark reference)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--upstream", required=True)
    a = p.parse_args()
    try:
        import uvloop  # same event loop Sanic uses, for a like-for-like comparison
    except ImportError:
        uvloop = None
    (uvloop.run if uvloop else asyncio.run)(main(a.host, a.port, a.upstream.rstrip("/")))
