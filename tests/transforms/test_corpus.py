"""Acceptance: every corpus case keeps the value its question needs, and the corpus as a
whole saves at least 60% of its tokens. The savings table is printed at the end of the run."""

from __future__ import annotations

import pytest

from headroom.state.memory_store import MemoryStore
from headroom.transforms import ccr, envelope
from headroom.transforms.detect import tool_hint
from headroom.transforms.tokens import count_tokens
from testkit.corpus.cases import all_cases
from testkit.corpus.report import run_case

CASES = all_cases()
NAMES = [c.name for c in CASES]


def test_corpus_is_realistic_and_small():
    """Each case is a sizeable tool output whose answers really are in the data."""
    assert len(CASES) >= 12
    kinds = {c.tool for c in CASES}
    assert {"Bash", "Grep", "Glob", "Read", "WebFetch"} <= kinds
    assert any(c.provider == "openai" for c in CASES)
    for case in CASES:
        assert count_tokens(case.content) > 1_000, case.name
        for answer in case.answers:
            assert answer in case.content, (case.name, answer)


@pytest.mark.parametrize("name", NAMES)
def test_needed_values_survive(corpus_outcomes, name):
    outcome = corpus_outcomes[name]
    case = outcome.case
    assert outcome.receipt.errors == 0
    for answer in case.answers:
        assert answer in outcome.output, f"{name}: {answer!r} was lost"
    if case.same_line:
        lines = outcome.output.split("\n")
        assert any(all(part in line for part in case.same_line) for line in lines), (
            f"{name}: {case.same_line} no longer on one line"
        )


@pytest.mark.parametrize("name", [c.name for c in CASES if c.deep])
def test_deep_answers_are_kept_on_purpose(corpus_outcomes, name):
    """The answer sits where a head+tail cut of the same size would have dropped it, so
    finding it in the output proves the question/anomaly-aware selection did its job."""
    outcome = corpus_outcomes[name]
    content = outcome.case.content
    budget = len(outcome.output)
    naive = content[: budget // 2] + content[-(budget // 2):]
    assert any(answer not in naive for answer in outcome.case.answers), name
    assert outcome.block_after < outcome.block_before / 2


def test_file_reads_are_sent_exactly(corpus_outcomes):
    for outcome in corpus_outcomes.values():
        if outcome.case.unchanged:
            assert outcome.output == outcome.case.content
            assert outcome.receipt.transforms == []


def test_logs_read_through_a_shell_are_compressed(corpus_outcomes):
    """``tail /var/log/…`` is a file view, but of a log: it is compressed, not kept exact."""
    views = [o for o in corpus_outcomes.values() if tool_hint(o.case.tool, o.case.tool_input) == "log"]
    assert len(views) >= 3  # Claude Code's Bash, Codex's argv shell and exec_command
    for outcome in views:
        assert outcome.block_after < outcome.block_before / 2, outcome.case.name


def test_client_headers_reach_the_upstream_unchanged(corpus_outcomes):
    wrapped = [o for o in corpus_outcomes.values() if envelope.split(o.case.content)[0]]
    assert wrapped
    for outcome in wrapped:
        header = envelope.split(outcome.case.content)[0]
        assert outcome.output.startswith(header) and outcome.output != outcome.case.content


def test_lossy_cases_can_be_retrieved(corpus_outcomes):
    """Every case that dropped content says so with a marker whose key is in the receipt."""
    lossy = [o for o in corpus_outcomes.values() if o.receipt.ccr_keys]
    assert len(lossy) >= 8
    for outcome in lossy:
        (key,) = outcome.receipt.ccr_keys
        assert key in ccr.marker_keys(outcome.output)
        assert ccr.content_key(outcome.case.content) == key


def test_corpus_savings_target(corpus_outcomes):
    before = sum(o.block_before for o in corpus_outcomes.values())
    after = sum(o.block_after for o in corpus_outcomes.values())
    assert 1 - after / before >= 0.60
    req_before = sum(o.receipt.tokens_before for o in corpus_outcomes.values())
    req_after = sum(o.receipt.tokens_after for o in corpus_outcomes.values())
    assert 1 - req_after / req_before >= 0.60
    for outcome in corpus_outcomes.values():
        assert outcome.receipt.tokens_saved == outcome.receipt.tokens_before - outcome.receipt.tokens_after
        # the receipt's savings are the tool output's savings (nothing else is rewritten)
        assert outcome.receipt.tokens_saved == outcome.block_before - outcome.block_after


async def test_corpus_output_is_deterministic():
    """Same input, fresh stores: byte-identical output (compressors are pure)."""
    for case in CASES:
        first = await run_case(case, store=MemoryStore())
        second = await run_case(case, store=MemoryStore())
        assert first.output == second.output, case.name
