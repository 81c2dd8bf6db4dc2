"""Every trace shape as its runtime prints it (Go panics and goroutine dumps, .NET inner and
aggregate exceptions, Kotlin/Java causes and suppressed exceptions, Python chains and exception
groups): alone it is folded losslessly; in a long log that is cut, the final exception line and
every cause's line reach the model with their frames."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headroom.transforms import frames, log_compressor
from headroom.transforms.base import Brief, Limits
from headroom.transforms.detect import Kind, detect
from headroom.transforms.router import compress_block
from tests.transforms import trace_samples as samples
from tests.transforms.test_frames import unfold

# The lines that say what went wrong: a final exception, a cause, an inner or suppressed one.
_CAUSE = re.compile(r"^\s*(?:\| )?(?:---> |Caused by: |Suppressed: |Unhandled exception\. |Exception in thread "
                    r"|panic: |Stack overflow|[\w.]*(?:Error|Exception|Group)\b)")
SAMPLES = {
    "go_panic": samples.GO_PANIC,
    "python_group": samples.PY_GROUP,
    "python_chain": samples.PY_CHAIN,
    "dotnet_inner": samples.DOTNET_INNER,
    "dotnet_aggregate": samples.DOTNET_AGGREGATE,
    "dotnet_stack_overflow": samples.dotnet_stack_overflow(),
    "kotlin": samples.KOTLIN,
}
KEY = "0123456789abcdef"


def _causes(text: str) -> list[str]:
    return [line for line in text.split("\n") if _CAUSE.match(line)]


def _in_log(text: str, before: int = 300, after: int = 300) -> str:
    log = [f"2026-11-01T09:{i // 60:02d}:{i % 60:02d}Z INFO served GET /api/items/{i} 200"
           for i in range(before + after)]
    return "\n".join(log[:before] + text.rstrip("\n").split("\n") + log[before:])


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_trace_alone_is_folded_losslessly_and_keeps_every_cause(name):
    text = SAMPLES[name]
    assert _causes(text), name  # the sample has what the test is about
    assert detect(text, "Bash", {"command": "./run"}).kind is Kind.LOG
    _, out = compress_block(text, "Bash", Brief(ccr_key=KEY), {"command": "./run"})
    folded = text if out is None else out.text
    assert len(folded) <= len(text)
    assert unfold(folded.split("\n")) == text.split("\n")
    for cause in _causes(text):
        assert cause in folded.split("\n"), cause


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_in_a_long_log_every_cause_and_its_frames_reach_the_model(name):
    text = SAMPLES[name]
    out = log_compressor.compress(_in_log(text), Brief(ccr_key=KEY, limits=Limits()))
    kept = out.text.split("\n")
    assert out.omitted >= 500  # the log around the trace is cut
    for cause in _causes(text):
        assert cause in kept, cause
    whole = unfold(frames.fold(text.rstrip("\n").split("\n")))
    assert whole == text.rstrip("\n").split("\n")
    folded_trace = frames.fold(text.rstrip("\n").split("\n"))
    assert all(line in kept for line in folded_trace if line.strip()), name  # the trace whole, as folded


def test_identical_goroutines_fold_to_one_block_and_their_numbers():
    lines = samples.GO_PANIC.split("\n")
    folded = frames.fold_goroutines(lines)
    assert "[\u2026 39 more goroutines identical to goroutine 18 but for their numbers: 19-57]" in folded
    assert folded.count("main.worker(0x0?, 0x0?)") == 1
    assert folded[:7] == lines[:7]  # the panic and the goroutine that panicked, untouched
    assert unfold(folded) == lines


def test_goroutines_in_another_state_or_stack_are_not_folded_together():
    block = ["goroutine {} [chan receive]:", "main.worker(0x0?)", "\t/src/w.go:16 +0x6e", "created by main.main",
             "\t/src/w.go:29 +0x56", ""]
    lines = [x.format(i) for i in (18, 19, 20) for x in block]
    lines[6] = "goroutine 19 [select]:"
    assert frames.fold_goroutines(lines) == lines
    lines = [x.format(i) for i in (18, 19, 20, 27, 28) for x in block]
    folded = frames.fold_goroutines(lines)
    assert folded[5] == "[\u2026 4 more goroutines identical to goroutine 18 but for their numbers: 19-20, 27-28]"
    assert unfold(folded) == lines


_STATES = ["chan receive", "select", "IO wait", "semacquire", "chan receive, 2 minutes"]
_STACKS = [["main.worker(0x0?)", "\t/src/w.go:16 +0x6e"], ["net/http.(*conn).serve(0xc0001)", "\t/x/server.go:1991"],
           ["main.main()", "\t/src/main.go:9 +0x1d", "created by main.main", "\t/src/main.go:29 +0x56"]]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9999), st.sampled_from(_STATES), st.sampled_from(range(len(_STACKS))),
                          st.sampled_from(["", "", "exit status 2", "\tstray"])), max_size=12),
       st.sampled_from(["", "panic: boom\n", "SIGQUIT: quit\nPC=0x46ae81 m=0 sigcode=0\n"]))
def test_folding_any_goroutine_dump_loses_nothing(blocks, preamble):
    lines = preamble.split("\n")[:-1] if preamble else []
    for gid, state, stack, after in blocks:
        lines += [f"goroutine {gid} [{state}]:", *_STACKS[stack], ""]
        if after:
            lines.append(after)
    folded = frames.fold_goroutines(lines)
    assert folded == frames.fold_goroutines(list(lines))
    assert len("\n".join(folded)) <= len("\n".join(lines))
    assert unfold(folded) == lines
