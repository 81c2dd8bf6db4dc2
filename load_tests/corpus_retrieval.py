"""Every corpus answer, needed by a careful model, through the real proxy: does it reach the
client, how many retrievals does it take, and what does the upstream get in all?

Starts the mock upstream and three ``headroom proxy`` processes: one as shipped (compression,
the retrieval tool declared), one with ``--no-optimize`` (today's forwarding as is), and one
compressing with ``--retrieval-tool off`` (what reaches the model without the tool). Each
fact of each corpus case is asked for in each format (:mod:`testkit.corpus.reach`) twice:

* ``asked``: the conversation holds the case's own question (compression knows what is needed);
* ``later``: it holds a general request, and the fact is needed later, so compression cannot
  know which one: whatever it left out, the model must fetch back through ``headroom_retrieve``.

Prints one Markdown table (docs/benchmarks.md shows it) with the saving net of retrievals:
tokens over every upstream call, continuations included, against ``--no-optimize``.

    python load_tests/corpus_retrieval.py                   # all four formats
    python load_tests/corpus_retrieval.py --formats anthropic --per-case
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testkit.corpus import reach
from testkit.services import start_mock, start_proxy, stop

FLAGS = ("--no-cache", "--no-rate-limit")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--formats", default=",".join(reach.FORMATS), help="comma list of " + ",".join(reach.FORMATS))
    parser.add_argument("--per-case", action="store_true", help="also print facts reached and retrievals per case")
    parser.add_argument("--json", metavar="OUT", help="also write the totals here")
    args = parser.parse_args(argv)
    formats = tuple(f for f in args.formats.split(",") if f in reach.FORMATS)
    logs = Path(tempfile.mkdtemp(prefix="headroom-corpus-"))
    mock = start_mock(logs / "mock.log")
    proxies = []
    try:
        proxies.append(optimising := start_proxy(logs / "proxy.log", mock.url, *FLAGS))
        proxies.append(forwarding := start_proxy(logs / "no-optimize.log", mock.url, "--no-optimize", *FLAGS))
        proxies.append(toolless := start_proxy(logs / "tool-off.log", mock.url, "--retrieval-tool", "off", *FLAGS))
        lines, out, cases = [reach.HEADER], {}, []
        for label, later in (("asked", False), ("later", True)):
            started = time.perf_counter()
            items = reach.asks(formats, later=later)
            key = f"{reach.API_KEY}-{label}"  # a caller each: compression is memoised per caller
            on = reach.run_at(optimising.url, key, mock, items)
            off = reach.run_at(forwarding.url, key, mock, items)
            without = reach.run_at(toolless.url, key, mock, items)
            lines += reach.rows(label, on, off, without)
            cases.append(f"{label}:\n{reach.per_case(on)}")
            both = reach.totals(on), reach.totals(off)
            out[label] = {"compressed": vars(both[0]), "no_optimize": vars(both[1]), "saved": reach.saved(*both),
                          "tool_off": vars(reach.totals(without))}
            print(f"[{label}] {len(items)} asks in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    finally:
        for proxy in proxies:
            stop(proxy.proc)
        if mock.proc is not None:
            stop(mock.proc)
    print("\n".join(lines))
    if args.per_case:
        print("\n" + "\n\n".join(cases))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    missed = sum(o["compressed"]["facts"] - o["compressed"]["reached"] for o in out.values())
    return 1 if missed else 0




if __name__ == "__main__":
    sys.exit(main())
