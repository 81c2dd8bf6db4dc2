"""Run every corpus case through the pipeline and report what survived and what it saved.

``python -m testkit.corpus.report`` prints the table; the corpus tests use :func:`run_case`
and print the same table at the end of the pytest run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from headroom.state.memory_store import MemoryStore
from headroom.transforms.pipeline import PipelineOptions, Receipt, run_pipeline
from headroom.transforms.tokens import count_tokens
from testkit.corpus.cases import Case, all_cases, body_for, tool_output


@dataclass(frozen=True)
class Outcome:
    case: Case
    output: str  # the tool output as it would be sent upstream
    receipt: Receipt
    block_before: int  # tokens of the tool output alone
    block_after: int

    @property
    def saved_share(self) -> float:
        return 1 - self.block_after / self.block_before if self.block_before else 0.0


async def run_case(case: Case, options: PipelineOptions | None = None, store=None) -> Outcome:
    body = body_for(case)
    new_body, receipt = await run_pipeline(body, case.provider, store or MemoryStore(), "corpus",
                                           options or PipelineOptions())
    output = tool_output(new_body, case.provider) if new_body is not None else case.content
    return Outcome(case, output, receipt, count_tokens(case.content), count_tokens(output))


def table(outcomes: list[Outcome]) -> str:
    lines = [f"{'case':24s} {'tokens before':>13s} {'after':>7s} {'saved':>7s}  transforms"]
    for o in outcomes:
        lines.append(f"{o.case.name:24s} {o.block_before:>13d} {o.block_after:>7d} {o.saved_share:>7.1%}  "
                     f"{','.join(o.receipt.transforms) or '-'}")
    before = sum(o.block_before for o in outcomes)
    after = sum(o.block_after for o in outcomes)
    req_before = sum(o.receipt.tokens_before for o in outcomes)
    req_after = sum(o.receipt.tokens_after for o in outcomes)
    lines.append(f"{'TOTAL (tool outputs)':24s} {before:>13d} {after:>7d} {1 - after / before:>7.1%}")
    lines.append(f"{'TOTAL (whole requests)':24s} {req_before:>13d} {req_after:>7d} {1 - req_after / req_before:>7.1%}")
    return "\n".join(lines)


async def run_all() -> list[Outcome]:
    return [await run_case(case) for case in all_cases()]


if __name__ == "__main__":
    print(table(asyncio.run(run_all())))
