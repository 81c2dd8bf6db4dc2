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

    python load_tests/bench_retrieval_tool.py                   # all four formats
    python load_tests/bench_retrieval_tool.py --requests 400 --json out.json
    python load_tests/bench_retrieval_tool.py --aa              # both with the tool: the noise floor

Benchmarks on a small shared machine are noisy: compare the two proxies within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from headroom.formats import named  # noqa: E402
from headroom.formats.base import TOOL_NAME, dumps  # noqa: E402
from load_tests.bench import Processes, percentile, wait_healthy  # noqa: E402
from testkit.ports import free_port  # noqa: E402

# One client tool, the shell, in each format's shape: an agent's request, nothing to retrieve.
_BASH = "Run a shell command and return its output."
_COMMAND = {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}
_ASK = "Say hello in one short sentence. #"  # "#": a serial number, so no two requests are alike


@dataclass(frozen=True)
class AgentRequest:
    """One format's agent request: the path, headers and body of its JSON call, and where its
    stream differs (the body's ``"stream": true``, or Gemini's own path)."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    stream_path: str | None = None  # the stream's path when the format streams on another one

    def streamed(self) -> tuple[str, dict[str, Any]]:
        if self.stream_path is not None:
            return self.stream_path, self.body
        return self.path, {**self.body, "stream": True}


_OPENAI = {"authorization": "Bearer sk-bench", "content-type": "application/json", "x-mock-events": "20"}
REQUESTS: dict[str, AgentRequest] = {
    "anthropic": AgentRequest(
        "/v1/messages", {"x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01",
                         "content-type": "application/json", "x-mock-events": "20"},
        {"model": "claude-sonnet-4-5", "max_tokens": 64,
         "tools": [{"name": "Bash", "description": _BASH, "input_schema": _COMMAND}],
         "messages": [{"role": "user", "content": _ASK}]}),
    "chat": AgentRequest(
        "/v1/chat/completions", _OPENAI,
        {"model": "gpt-4o", "max_tokens": 64,
         "tools": [{"type": "function", "function": {"name": "Bash", "description": _BASH, "parameters": _COMMAND}}],
         "messages": [{"role": "user", "content": _ASK}]}),
    "responses": AgentRequest(
        "/v1/responses", _OPENAI,
        {"model": "gpt-5", "max_output_tokens": 64,
         "tools": [{"type": "function", "name": "Bash", "description": _BASH, "parameters": _COMMAND}],
         "input": [{"role": "user", "content": _ASK}]}),
    "gemini": AgentRequest(
        "/v1beta/models/gemini-2.5-flash:generateContent",
        {"x-goog-api-key": "gk-bench", "content-type": "application/json", "x-mock-events": "20"},
        {"generationConfig": {"maxOutputTokens": 64},
         "tools": [{"functionDeclarations": [{"name": "Bash", "description": _BASH, "parameters": {
             "type": "OBJECT", "properties": {"command": {"type": "STRING"}}, "required": ["command"]}}]}],
         "contents": [{"role": "user", "parts": [{"text": _ASK}]}]},
        stream_path="/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
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
    agent = REQUESTS[fmt]
    path, headers, plain = agent.path, agent.headers, dumps(agent.body)
    stream_path, stream_body = agent.streamed()
    streamed = dumps(stream_body)
    got: dict[str, dict[str, list[float]]] = {name: {key: [] for key in SERIES} for name in bases}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        for round_ in range(rounds):  # interleaved, each first in turn: drift on a shared machine hits both alike
            for name, base in (list(bases.items()) if round_ % 2 == 0 else list(bases.items())[::-1]):
                for i in range(warmup + n):
                    stream = await sample(session, base + stream_path, streamed, headers)
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

    agent = REQUESTS[fmt]
    body = agent.body
    loop = named(fmt).tool_loop
    assert loop is not None
    declared = json.loads(json.dumps(body))
    assert loop.declare(declared, agent.path, {})
    added = dumps(declared["tools"][-1]) if isinstance(declared.get("tools"), list) else dumps(declared)
    return {"bytes": len(added), "o200k_tokens": tokens.count_tokens(added.decode()),
            "mock_tokens": len(dumps(declared)) // 4 - len(dumps(body)) // 4}


async def declares(base: str, mock: str, fmt: str) -> bool:
    """Whether the upstream got the retrieval tool in this format's request through ``base``
    (so that neither proxy is measured doing something else than it should)."""
    agent = REQUESTS[fmt]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.post(mock + "/_mock/reset"):
            pass
        async with session.post(base + agent.path, data=unique(dumps(agent.body)), headers=agent.headers) as r:
            if r.status != 200:
                raise RuntimeError(f"{fmt}: {r.status} {await r.text()}")
            await r.read()
        async with session.get(mock + "/_mock/requests") as r:
            (seen,) = await r.json()
    return TOOL_NAME in seen["body"]


async def run(args: argparse.Namespace, procs: Processes) -> dict[str, Any]:
    py = sys.executable
    mock = procs.spawn_announcing("mock", [py, "-m", "testkit.mock_upstream", "--port", "0"])
    bases = {}
    # --aa: the "off" proxy runs with the tool on too: the ratios then show the machine's noise.
    for name, switch in (("tool-on", "on"), ("tool-off", "on" if args.aa else "off")):
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
        if not await declares(bases["tool-on"], mock, fmt) or await declares(bases["tool-off"], mock, fmt) != args.aa:
            raise RuntimeError(f"{fmt}: the tool is not declared with --retrieval-tool on only")
        out[fmt] = {"on": on, "off": off, "ratio": {key: on[key] / off[key] for key in SERIES},
                    "tool": tool_cost(fmt)}
    return out


def report(results: dict[str, Any]) -> str:
    lines = ["| format | stream TTFB p50 on / off ms | ratio | stream p50 on / off ms | ratio "
             "| JSON p50 on / off ms | ratio | proxy overhead p50 on / off ms (stream, JSON) | ratios "
             "| tool bytes | tool tokens (o200k) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for fmt, r in results.items():
        on, off, ratio, tool = r["on"], r["off"], r["ratio"], r["tool"]
        lines.append(f"| {fmt} | {on['ttfb']:.3f} / {off['ttfb']:.3f} | {ratio['ttfb']:.2f} "
                     f"| {on['stream']:.3f} / {off['stream']:.3f} | {ratio['stream']:.2f} "
                     f"| {on['json']:.3f} / {off['json']:.3f} | {ratio['json']:.2f} "
                     f"| {on['stream_overhead']:.3f} / {off['stream_overhead']:.3f}, "
                     f"{on['json_overhead']:.3f} / {off['json_overhead']:.3f} "
                     f"| {ratio['stream_overhead']:.2f}, {ratio['json_overhead']:.2f} "
                     f"| {tool['bytes']} | {tool['o200k_tokens']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=500, help="samples per proxy and format (each a stream and a JSON)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--formats", default=",".join(REQUESTS), help=f"comma list of {','.join(REQUESTS)}")
    p.add_argument("--json", metavar="OUT", help="also write the results here")
    p.add_argument("--aa", action="store_true", help="A/A: both proxies with the tool on (the noise floor)")
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
