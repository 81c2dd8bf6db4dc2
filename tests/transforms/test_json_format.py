"""The compact table notation is lossless: decode(encode(x)) == x, key order and all."""

from __future__ import annotations

import json
import random

import pytest

from headroom.transforms.json_decode import decode
from headroom.transforms.json_format import RawNumber, encode, loads


def roundtrip(text: str):
    value = loads(text)
    encoded = encode(value)
    decoded = decode(encoded)
    assert decoded == value
    # == ignores key order; the JSON text does not
    assert json.dumps(decoded, ensure_ascii=False) == json.dumps(value, ensure_ascii=False)
    return encoded


def test_table_keeps_null_empty_missing_and_lookalikes_apart():
    rows = [
        {"id": 1, "name": "Ann", "note": None, "tag": "", "zip": "01234", "n": "1.5", "flag": "true"},
        {"id": 2, "name": "Bo, Jr.", "note": "null", "zip": "10115", "n": 1.5, "flag": True},
        {"id": 3, "name": " padded ", "note": "x", "tag": "#1", "zip": "…", "n": "-0", "flag": "false"},
    ]
    encoded = roundtrip(json.dumps(rows))
    assert encoded.startswith("[\n# 3 rows: id,name,note,tag,zip,n,flag\n")
    lines = encoded.split("\n")
    assert lines[2] == '1,Ann,null,"",01234,"1.5","true"'
    assert lines[3] == '2,"Bo, Jr.","null",,"10115",1.5,true'  # missing tag → empty cell


def test_nested_objects_flatten_only_when_identical_in_shape():
    rows = [{"id": i, "addr": {"city": c, "geo": {"lat": 1.0, "lon": 2.0}}, "meta": {"k": i} if i else {"j": 0}}
            for i, c in enumerate(["Berlin", "Paris", "Rome"])]
    encoded = roundtrip(json.dumps(rows))
    assert "addr.city,addr.geo.lat,addr.geo.lon,meta" in encoded
    assert '{"j":0}' in encoded  # differently shaped objects stay inline JSON


def test_key_order_conflicts_are_not_tabled():
    rows = [{"a": 1, "b": 2}, {"b": 3, "a": 4}, {"a": 5, "b": 6}]
    encoded = roundtrip(json.dumps(rows))
    assert "#" not in encoded
    assert encoded == '[{"a":1,"b":2},{"b":3,"a":4},{"a":5,"b":6}]'


def test_number_spelling_unicode_and_escapes_survive():
    text = '{"p": 1.10, "e": 1E5, "big": 123456789012345678901234567890, "neg": -0.0, ' \
           '"u": "h\\u00e9llo \\u2603 日本", "ctl": "tab\\there\\nnewline", "q": "say \\"hi\\"", ' \
           '"lone": "\\ud83d", "pair": "\\ud83d\\ude00", "sep": "a\\u2028b"}'
    encoded = roundtrip(text)
    assert '"p":1.10' in encoded and '"e":1E5' in encoded
    assert "héllo ☃ 日本" in encoded  # unicode kept readable, not \\u-escaped
    assert "😀" in encoded
    encoded.encode("utf-8")  # never emits lone surrogates raw


def test_keyed_tables_for_objects_of_similar_objects():
    flags = {f"flag_{i}": {"on": i % 2 == 0, "pct": i} for i in range(6)}
    flags["true"] = {"on": False, "pct": 99}
    flags["12"] = {"on": True, "pct": 1}
    encoded = roundtrip(json.dumps({"flags": flags}))
    assert "# 8 entries: (key),on,pct" in encoded
    assert '\n"true",false,99\n' in encoded and '\n"12",true,1\n' in encoded


def test_columns_with_awkward_names():
    rows = [{"a.b": i, "": i, "x,y": i, "null": i, "ok": {"c.d": i}} for i in range(3)]
    roundtrip(json.dumps(rows))


def _random_value(rng: random.Random, depth: int = 0):
    pick = rng.random()
    if depth > 3 or pick < 0.45:
        return rng.choice([
            None, True, False, 0, -7, 3.25, "", " ", "null", "true", "1e3", "01", "a,b", "#x", "…y", "[z", "{q",
            "plain", "two words", "ünï", "tab\tx", "new\nline", 'quo"te', "x" * rng.randint(1, 30),
            rng.randint(-10**20, 10**20),
        ])
    if pick < 0.7:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 6))]
    if pick < 0.85:
        keys = rng.sample(["id", "name", "a.b", "x", "y", "", "null", "k,v", "n"], rng.randint(1, 5))
        return [{k: _random_value(rng, depth + 2) for k in keys if rng.random() < 0.9} or {"id": 1}
                for _ in range(rng.randint(3, 7))]
    if pick < 0.93:  # an object of similar objects (a keyed table)
        names = rng.sample(["a", "b", "", "true", "12", "k,v", "x.y", "#h", " s", "ü"], rng.randint(5, 8))
        fields = rng.sample(["on", "pct", "owner", "n"], rng.randint(1, 3))
        return {name: {f: _random_value(rng, depth + 2) for f in fields} for name in names}
    keys = rng.sample(["id", "name", "x", "y", "status"], rng.randint(0, 5))
    return {k: _random_value(rng, depth + 1) for k in keys}


@pytest.mark.parametrize("seed", range(300))
def test_random_documents_roundtrip(seed):
    rng = random.Random(seed)
    roundtrip(json.dumps(_random_value(rng), indent=rng.choice([None, 2])))


def test_raw_numbers_are_strings_that_encode_verbatim():
    value = loads("[1.50, 2e-3]")
    assert all(isinstance(v, RawNumber) for v in value)
    assert encode(value) == "[1.50,2e-3]"
