"""JSON that goes back as JSON (json_value) and Gemini's structured ``functionResponse`` values
through the pipeline: same shape, the asked-about items kept, memoised, prefix-stable, and the
original retrievable."""

from __future__ import annotations

import json

from headroom.formats.base import dumps
from headroom.transforms import PipelineOptions, ccr, json_value, needs_work, retrieve, run_pipeline
from headroom.transforms.base import Brief, Limits
from headroom.transforms.terms import extract_terms

QUESTION = "Why did ord_00150 fail?"
KEY = "0123456789abcdef"


def orders(n: int = 300) -> list[dict]:
    return [{"id": f"ord_{i:05d}", "status": "failed" if i == 150 else "shipped", "amount": 10 + i % 7,
             "address": {"city": "Berlin", "zip": "10115"}, "tags": ["a", "b"]} for i in range(n)]


def brief(question: str = QUESTION, **limits) -> Brief:
    return Brief(terms=extract_terms(question), ccr_key=KEY, limits=Limits(**limits))


def compact(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_an_array_of_records_stays_an_array_of_those_records_with_the_asked_one_kept():
    rows = orders()
    out = json_value.compress(compact(rows), brief())
    assert out is not None and out.omitted > 0 and "json:value" in out.transforms
    value = json.loads(out.text)
    assert isinstance(value, list)
    assert value[0] == ccr.marker(out.omitted, 300, "items", KEY)
    assert ccr.marker_keys(value[0]) == [KEY]
    records = [v for v in value[1:] if isinstance(v, dict)]
    gaps = [v for v in value[1:] if isinstance(v, str)]
    assert all(r in rows for r in records)  # kept items are the client's own, whole
    assert {"id": "ord_00150", "status": "failed", "amount": 13, "address": {"city": "Berlin", "zip": "10115"},
            "tags": ["a", "b"]} in records
    assert gaps and all(g.startswith("\u2026 ") and g.endswith(" rows omitted") for g in gaps)
    assert len(records) + sum(int(g.split()[1]) for g in gaps) == 300
    assert len(out.text) < len(compact(rows)) / 5


def test_an_object_keeps_its_keys_and_their_types_and_names_the_key_in_one_more():
    doc = {"orders": orders(), "total": 300, "next": None, "meta": {"page": 1, "note": "x" * 40}}
    out = json_value.compress(compact(doc), brief())
    value = json.loads(out.text)
    assert list(value) == ["[headroom]", *doc]
    assert KEY in value["[headroom]"]
    assert {k: type(v) for k, v in value.items() if k != "[headroom]"} == {k: type(v) for k, v in doc.items()}
    assert value["total"] == 300 and value["next"] is None and value["meta"] == doc["meta"]
    assert any(isinstance(r, dict) and r["id"] == "ord_00150" for r in value["orders"])


def test_numbers_keep_their_spelling_and_a_big_object_keeps_the_asked_keys():
    text = "{" + ",".join(f'"host_{i}":{{"load":1.10,"state":"{"down" if i == 77 else "up"}"}}'
                          for i in range(200)) + "}"
    out = json_value.compress(text, brief("why is host_77 down?"))
    value = json.loads(out.text)
    assert value["host_77"] == {"load": 1.1, "state": "down"} and '"load":1.10' in out.text
    assert value["\u2026"].endswith("omitted") and len(value) < 40


def test_small_values_and_values_with_nothing_to_drop_are_left_alone():
    assert json_value.compress(compact(orders(10)), brief()) is None  # under lossy_min_chars
    assert json_value.compress(compact({"x": "y" * 10_000}), brief(max_items=10**6)) is not None  # a long string is cut
    flat = compact([{"id": i} for i in range(30)])  # under max_items: nothing to trim
    assert json_value.compress(flat, brief(lossy_min_chars=10)) is None
    taken = {"[headroom]": 1, "rows": orders()}  # no key free for the marker
    assert json_value.compress(compact(taken), brief()) is None


def gemini(result, question: str = QUESTION, follow_up: str | None = None) -> dict:
    contents = [
        {"role": "user", "parts": [{"text": question}]},
        {"role": "model", "parts": [{"functionCall": {"name": "list_orders", "args": {"limit": 300}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "list_orders", "response": {"result": result}}}]},
    ]
    if follow_up:
        contents += [{"role": "model", "parts": [{"text": "It failed."}]},
                     {"role": "user", "parts": [{"text": follow_up}]}]
    return {"contents": contents, "tools": [{"functionDeclarations": [{"name": "list_orders"}]}]}


async def test_a_structured_gemini_response_is_compressed_to_a_value_memoised_and_retrievable(store):
    rows = orders()
    body = gemini(rows)
    assert needs_work(body, "gemini")
    new, receipt = await run_pipeline(body, "gemini", store, "alice", PipelineOptions())
    assert new is not None and body["contents"][2]["parts"][0]["functionResponse"]["response"]["result"] == rows
    response = new["contents"][2]["parts"][0]["functionResponse"]["response"]
    assert list(response) == ["result"] and isinstance(response["result"], list)
    assert any(isinstance(r, dict) and r["id"] == "ord_00150" for r in response["result"])
    assert "json:value" in receipt.transforms and receipt.tokens_saved > 0
    (key,) = receipt.ccr_keys
    assert key in response["result"][0]
    assert json.loads(await retrieve(store, "alice", key)) == rows  # the original, whole

    # The next turn (another question) re-sends the value exactly: the memo, not the question.
    later, again = await run_pipeline(gemini(rows, follow_up="And ord_00299?"), "gemini", store, "alice",
                                      PipelineOptions())
    assert again.memo_hits == 1 and not again.prefix_changes
    sent = dumps(later["contents"][2])
    assert sent == dumps(new["contents"][2])


async def test_string_and_structured_values_of_one_response_are_blocks_of_their_own(store):
    text = json.dumps(orders(), indent=2)
    body = gemini(orders())
    body["contents"][2]["parts"][0]["functionResponse"]["response"] = {"output": text, "rows": orders(), "n": 300}
    new, receipt = await run_pipeline(body, "gemini", store, "c", PipelineOptions())
    response = new["contents"][2]["parts"][0]["functionResponse"]["response"]
    assert list(response) == ["output", "rows", "n"] and response["n"] == 300
    assert isinstance(response["output"], str) and response["output"].startswith("[headroom:")  # the notation
    assert isinstance(response["rows"], list) and response["rows"][0].startswith("[headroom:")  # a value
    assert receipt.blocks == 2
