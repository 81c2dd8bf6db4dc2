"""Compression judged on real outputs generated at test time (a bounded sample of
:mod:`testkit.realworld`; ``python load_tests/realworld.py`` runs the full set).

The outputs come from this machine's programs and the questions are drawn with a seed, so
the assertions are about guarantees (nothing lost, never larger, deterministic) and a floor
on the savings well under what the full set measures, not about exact figures."""

from __future__ import annotations

import asyncio

import pytest

from testkit import realworld


@pytest.fixture(scope="module")
def sample():
    outputs = realworld.generate(realworld.CHECK_SEED, questions_per_output=2, only=realworld.SAMPLE)
    return outputs, asyncio.run(realworld.judge(outputs))


def test_the_sample_covers_many_kinds_of_real_output(sample):
    outputs, _trials = sample
    kinds = {o.kind.split(":")[0] for o in outputs}
    assert {"table", "records", "trace", "json", "log", "search"} <= kinds
    for output in outputs:
        for question in output.questions:
            assert all(n in output.content for n in question.needles), (output.kind, question)


def test_every_needle_reaches_the_model_or_is_retrievable(sample):
    _, trials = sample
    lost = [(t.output.kind, t.question.text) for t in trials if t.lost]
    assert not lost


def test_nothing_grows_and_the_sample_saves_most_tokens(sample):
    _, trials = sample
    assert all(t.tokens_after <= t.tokens_before for t in trials)
    total = realworld.KindReport("all", trials)
    assert total.saved >= 0.7, realworld.table(trials, realworld.CHECK_SEED)
    assert total.in_context >= 0.95 * total.needles, realworld.table(trials, realworld.CHECK_SEED)


def test_the_same_output_and_question_compress_to_the_same_bytes(sample):
    _, trials = sample
    again = asyncio.run(realworld.judge([t.output for t in trials[::7]]))
    first = {(t.output.kind, t.question.text): t.compressed for t in trials}
    for trial in again:
        assert trial.compressed == first[(trial.output.kind, trial.question.text)]
