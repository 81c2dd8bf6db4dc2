"""What declaring the retrieval tool costs: latency with it vs ``--retrieval-tool off``, and its tokens.

Starts the mock upstream and two ``headroom proxy`` processes (the same flags, the tool on in
one and off in the other), then sends each the same agent request (a tool list, nothing to
retrieve), streamed and not, in interleaved rounds on one keep-alive connection:

* stream time to first byte (p50) and to the end (p50), and the JSON answer's p50, per format;
* the proxy's own time on each (``x-headroom-overhead-ms``: before the first byte for a stream),
  which the machine's noise disturbs far less than the end-to-end times;
* the ratio on / off of each (1.0: declaring the tool costs nothing measurable).

It also prints what the declaration adds to every request: its bytes, its tokens (o200k, the
pipeline's tokenizer; providers' tokenizers differ a little), and what the mock upstream counts.

    python load_tests/bench_retrieval_tool.py                   # every format with a body below
    python load_tests/bench_retrieval_tool.py --requests 400 --json out.json

Benchmarks on a small shared machine are noisy: compare the two proxies within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from headroom.formats import named  # noqa: E402
from headroom.formats.base import dumps  # noqa: E402
from load_tests.bench import Processes, percentile, wait_healthy  # noqa: E402
from testkit.ports import free_port  # noqa: E402

TOOLS = [{"name": "Bash", "description": "Run a shell command and return its output.",
          "input_schema": {"type": "object", "properties": {"command": {"type": "string"}},
                           "required": ["command"]}}]

# Per format: the path, the headers and an agent request body (with tools). Each format's
# retrieval loop adds its own line here.
REQUESTS: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {
    "anthropic": ("/v1/messages", {"x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01",
                                   "content-type": "application/json", "x-mock-events": "20"},
                  {"model": "claude-sonnet-4-5", "max_tokens": 64, "tools": TOOLS,
                   "messages": [{"role": "user", "content": "Say hello in one short sentence. #"}]}),
}
_SERIAL = iter(range(1 << 62))


def unique(body: bytes) -> bytes:
    return body.replace(b"#", str(next(_SERIAL)).encode(), 1)


async def sample(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict) -> tuple[float, ...] | None:
    """(time to first byte, time to the end, the proxy's own ``x-headroom-overhead-ms``) of one
    request, in ms; None if it failed."""
    t0 = time.perf_counter()
    first = None
    try:
        async with session.post(url, data=unique(body), headers=headers) as r:
            async for _ in r.content.iter_any():
                first = first or time.perf_counter()
            ok = r.status == 200
            overhead = float(r.headers.get("x-headroom-overhead-ms", "nan"))
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None
    t1 = time.perf_counter()
    if not ok:
        return None
    return ((first or t1) - t0) * 1000, (t1 - t0) * 1000, overhead


SERIES = ("ttfb", "stream", "json", "stream_overhead", "json_overhead")


async def measure(bases: dict[str, str], fmt: str, n: int, rounds: int, warmup: int) -> dict[str, dict]:
    path, headers, body = REQUESTS[fmt]
    plain = dumps(body)
    streamed = dumps({**body, "stream": True})
    got: dict[str, dict[str, list[float]]] = {name: {key: [] for key in SERIES} for name in bases}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        for round_ in range(rounds):  # interleaved, each first in turn: drift on a shared machine hits both alike
            for name, base in (list(bases.items()) if round_ % 2 == 0 else list(bases.items())[::-1]):
                for i in range(warmup + n):
                    stream = await sample(session, base + path, streamed, headers)
                    answer = await sample(session, base + path, plain, headers)
                    if i < warmup or stream is None or answer is None:
                        continue
                    for key, value in zip(SERIES, (stream[0], stream[1], answer[1], stream[2], answer[2])):
                        got[name][key].append(value)
    return {name: {key: percentile(sorted(values), 0.5) for key, values in series.items()} | {"n": len(series["json"])}
            for name, series in got.items()}


def tool_cost(fmt: str) -> dict[str, Any]:
    """What the declaration adds to a request of this format: bytes and tokens."""
    from headroom.transforms import tokens

    _, _, body = REQUESTS[fmt]
    loop = named(fmt).tool_loop
    assert loop is not None
    declared = json.loads(json.dumps(body))
    loop.declare(declared)
    added = dumps(declared["tools"][-1]) if isinstance(declared.get("tools"), list) else dumps(declared)
    return {"bytes": len(added), "o200k_tokens": tokens.count_tokens(added.decode()),
            "mock_tokens": len(dumps(declared)) // 4 - len(dumps(body)) // 4}


async def run(args: argparse.Namespace, procs: Processes) -> dict[str, Any]:
    py = sys.executable
    mock = procs.spawn_announcing("mock", [py, "-m", "testkit.mock_upstream", "--port", "0"])
    bases = {}
    for name, switch in (("tool-on", "on"), ("tool-off", "off")):
        port = free_port()
        proc = procs.spawn(name, [py, "-m", "headroom", "proxy", "--host", "127.0.0.1", "--port", str(port),
                                  "--anthropic-api-url", mock, "--openai-api-url", mock, "--gemini-api-url", mock,
                                  "--no-cache", "--no-rate-limit", "--retrieval-tool", switch])
        bases[name] = f"http://127.0.0.1:{port}"
        await wait_healthy(bases[name], proc, 60)
    await asyncio.sleep(1.0)
    out: dict[str, Any] = {}
    for fmt in args.formats:
        print(f"[{fmt}] {args.rounds} rounds of {args.requests // args.rounds} requests each...", file=sys.stderr)
        results = await measure(bases, fmt, max(1, args.requests // args.rounds), args.rounds,
                                max(1, args.warmup // args.rounds))
        on, off = results["tool-on"], results["tool-off"]
        out[fmt] = {"on": on, "off": off, "ratio": {key: on[key] / off[key] for key in SERIES},
                    "tool": tool_cost(fmt)}
    return out


def report(results: dict[str, Any]) -> str:
    lines = ["| format | stream TTFB p50 on / off ms | ratio | stream p50 on / off ms | ratio "
             "| JSON p50 on / off ms | ratio | proxy overhead p50 on / off ms (stream, JSON) | tool bytes "
             "| tool tokens (o200k) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for fmt, r in results.items():
        on, off, ratio, tool = r["on"], r["off"], r["ratio"], r["tool"]
        lines.append(f"| {fmt} | {on['ttfb']:.3f} / {off['ttfb']:.3f} | {ratio['ttfb']:.2f} "
                     f"| {on['stream']:.3f} / {off['stream']:.3f} | {ratio['stream']:.2f} "
                     f"| {on['json']:.3f} / {off['json']:.3f} | {ratio['json']:.2f} "
                     f"| {on['stream_overhead']:.3f} / {off['stream_overhead']:.3f}, "
                     f"{on['json_overhead']:.3f} / {off['json_overhead']:.3f} "
                     f"| {tool['bytes']} | {tool['o200k_tokens']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=500, help="samples per proxy and format (each a stream and a JSON)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--formats", default=",".join(REQUESTS), help=f"comma list of {','.join(REQUESTS)}")
    p.add_argument("--json", metavar="OUT", help="also write the results here")
    args = p.parse_args(argv)
    args.formats = [f for f in args.formats.split(",") if f in REQUESTS]
    procs = Processes()
    try:
        results = asyncio.run(run(args, procs))
    except RuntimeError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.close()
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
