"""Every corpus answer reaches the client, in every format, net of what retrieving it costs.

For each fact each corpus case's question needs (:mod:`testkit.corpus.reach`), the careful
model of the mock upstream asks for it through the real proxy, with the official SDK of each
of the four formats (streamed or not, in turn). Twice: once with the case's own question in
the conversation (compression knows what is needed), once with a general request in its place
(the fact is needed *later*: compression cannot know which one, so whatever it left out the
model must fetch back through ``headroom_retrieve``, which the proxy answers itself). The
final answer the client gets must quote the fact, every time; and what the upstream was sent,
over every upstream call, continuations included, must stay well below what the same asks
send through ``--no-optimize``. ``load_tests/corpus_retrieval.py`` prints the same table.
"""

from __future__ import annotations

import pytest

from testkit.corpus import reach

FLAGS = ("--no-cache", "--no-rate-limit")
TARGET = 0.60  # the corpus's saving target (tests/test_compression_e2e.py), here net of retrievals
VARIANTS = {"asked": False, "later": True}


@pytest.fixture(scope="module")
def results(start_proxy, mock):
    """Per variant: (through the proxy as shipped, through ``--no-optimize``), one process each
    for all the asks; a caller per variant (compression is memoised per caller)."""
    optimising = start_proxy(*FLAGS)
    forwarding = start_proxy("--no-optimize", *FLAGS)
    out = {}
    for label, later in VARIANTS.items():
        items = reach.asks(later=later)
        out[label] = tuple(reach.run_at(proxy.url, f"{reach.API_KEY}-{label}", mock, items)
                           for proxy in (optimising, forwarding))
    return out




@pytest.mark.parametrize("label", VARIANTS)
def test_every_fact_of_the_corpus_reaches_the_client(results, label):
    optimised, baseline = results[label]
    assert len(optimised) == 4 * sum(len(reach.facts(case)) for case in reach.all_cases())
    missed = [f"{r.ask.fmt} {r.ask.case.name} {r.ask.fact!r} ({r.upstream_calls} upstream calls): {r.text[:300]!r}"
              for r in optimised if not r.reached]
    assert not missed, f"{len(missed)} of {len(optimised)} facts did not reach the client:\n" + "\n".join(missed)
    assert all(r.reached and r.upstream_calls == 1 for r in baseline)  # the harness itself, without Headroom


def test_what_compression_left_out_is_retrieved(results):
    """Asked later, some facts are not in what the upstream first got: each of those came back
    through a retrieval (and the client never saw the call, only the answer quoting it)."""
    optimised, _ = results["later"]
    left_out = [r for r in optimised if not r.first_held]
    assert left_out, "compression kept every fact: nothing here exercises the retrieval loop"
    assert all(r.retrievals >= 1 and r.reached for r in left_out)
    assert {r.ask.fmt for r in left_out} == set(reach.FORMATS)
    assert {r.ask.stream for r in left_out} == {True, False}
    assert all("headroom_retrieve" not in r.text for r in optimised)


def test_the_saving_net_of_retrievals_reaches_the_target(results, capsys):
    lines = [reach.HEADER]
    for label, (optimised, baseline) in results.items():
        lines += reach.rows(label, optimised, baseline)
        for fmt in reach.FORMATS:
            mine = reach.totals([r for r in optimised if r.ask.fmt == fmt])
            today = reach.totals([r for r in baseline if r.ask.fmt == fmt])
            assert reach.saved(mine, today) >= TARGET, (label, fmt, mine, today)
    with capsys.disabled():
        print("\nthe corpus's facts through the proxy, asked by the careful model (o200k tokens, every upstream call):")
        print("\n".join(lines))
