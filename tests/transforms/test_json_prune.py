"""Nested JSON objects: big dictionaries keep what the question names, long strings their opening."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from headroom.transforms import json_compressor
from headroom.transforms.base import Brief, Limits
from headroom.transforms.json_prune import GAP_KEY, Pruner
from headroom.transforms.terms import extract_terms


def _config() -> dict:
    variables = {f"VAR_{i:04d}": f"/opt/toolchain/{i}/lib:/usr/lib/x86_64-linux-gnu/{i}" for i in range(600)}
    variables["CONFIG_ARGS"] = "'--enable-shared' '--with-lto' '--prefix=/root/.pyenv/versions/3.11.7'"
    return {"name": "toolchain", "version": "3.11.7", "readme": "Long text. " * 400, "variables": variables}


def test_a_big_dictionary_keeps_the_key_the_question_names_and_stays_valid_json():
    doc = _config()
    text = json.dumps(doc, indent=2)
    brief = Brief(terms=extract_terms("What is CONFIG_ARGS set to?"), ccr_key="k" * 16)
    out = json_compressor.compress(text, brief)
    assert out is not None and out.omitted and "json:prune" in out.transforms
    marker, body = out.text.split("\n", 1)
    assert "headroom_retrieve key=kkkkkkkkkkkkkkkk" in marker
    assert "--with-lto" in body and "3.11.7" in body
    assert len(out.text) < len(text) / 10
    pruned = json.loads(body)  # valid JSON, the same shape along the kept paths
    assert pruned["variables"]["CONFIG_ARGS"] == doc["variables"]["CONFIG_ARGS"]
    assert pruned["variables"][GAP_KEY] == f"{600 + 1 - len(pruned['variables']) + 1} keys omitted"
    assert pruned["readme"].startswith("Long text.") and len(pruned["readme"]) < 200


def test_small_documents_are_not_pruned():
    doc = {"a": "x" * 400, "b": 1}
    assert "json:prune" not in (json_compressor.compress(json.dumps(doc, indent=2), Brief()) or
                                json_compressor.Compressed("", ())).transforms


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=400),
                     lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=5), children,
                                                                                       max_size=50),
                     max_leaves=80)


@settings(max_examples=150, deadline=None)
@given(_json, st.text(max_size=20))
def test_pruning_never_raises_is_deterministic_and_keeps_the_shape(value, question):
    limits = Limits(max_items=8, head_items=2, tail_items=1)
    terms = extract_terms(question)
    first = Pruner(terms, limits).prune(value)
    assert first == Pruner(terms, limits).prune(value)
    assert type(first) is type(value)
    assert len(json.dumps(first)) <= len(json.dumps(value)) + 40  # a gap note at most per object
    small = Limits(lossy_min_chars=200)
    out = json_compressor.compress(json.dumps(value, indent=1), Brief(terms=terms, limits=small))
    if out is not None:
        assert len(out.text) < len(json.dumps(value, indent=1))
