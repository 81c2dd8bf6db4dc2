"""Added latency of the first request after start-up, against the second and later ones.

Launches ``headroom proxy`` through the real CLI (against the mock upstream), waits for
``/health`` (or, with ``--wait readyz``, for ``/readyz``: what Kubernetes and ``headroom wrap``
wait for), then at once sends a realistic Anthropic request with a tool result, then a few more.
Reports the ``x-headroom-overhead-ms`` header each answer carries (the time Headroom added,
upstream time excluded), median over several launches.

    python load_tests/first_request.py                  # 5 launches, default flags
    python load_tests/first_request.py -n 3 -- --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from testkit.services import start_mock, start_proxy, stop
from testkit.waiting import wait_for


def _body(turn: int) -> dict:
    """A tool-using turn: a 12 KB JSON tool result the pipeline compresses."""
    rows = [{"id": f"row_{k:04d}", "status": "ok", "value": k * 7 % 1000} for k in range(200)]
    return {
        "model": "claude-sonnet-4-5", "max_tokens": 256,
        "system": "You are a helpful assistant." * 20,
        "messages": [
            {"role": "user", "content": f"turn {turn}: list the rows"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "query", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                          "content": json.dumps(rows, indent=1)}]},
        ],
    }


def one_launch(flags: list[str], requests: int, wait: str) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        mock = start_mock(Path(folder) / "mock.log")
        proxy = start_proxy(Path(folder) / "proxy.log", mock.url, "--no-cache", *flags)
        try:
            overheads = []
            with httpx.Client(timeout=30) as client:
                if wait == "readyz":
                    wait_for(lambda: client.get(f"{proxy.url}/readyz").status_code == 200, timeout=20,
                             interval=0.01, what="/readyz")
                for turn in range(requests):
                    answer = client.post(f"{proxy.url}/v1/messages", json=_body(turn),
                                         headers={"x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01"})
                    answer.raise_for_status()
                    overheads.append(float(answer.headers["x-headroom-overhead-ms"]))
            return overheads
        finally:
            stop(proxy.proc)
            stop(mock.proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--launches", type=int, default=5)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--wait", choices=("health", "readyz"), default="health",
                        help="send the first request once this answers 200")
    parser.add_argument("flags", nargs="*", help="extra headroom proxy flags (after --)")
    args = parser.parse_args()
    runs = [one_launch(args.flags, args.requests, args.wait) for _ in range(args.launches)]
    first = statistics.median(run[0] for run in runs)
    later = statistics.median(value for run in runs for value in run[1:])
    print(f"after /{args.wait}, launches: {args.launches}   first request added: {first:.1f} ms (median)   "
          f"later requests: {later:.1f} ms (median)")
    for run in runs:
        print("  " + "  ".join(f"{value:7.1f}" for value in run))


if __name__ == "__main__":
    main()
