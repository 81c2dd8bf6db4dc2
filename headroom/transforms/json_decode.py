"""Reading the compact JSON-with-tables notation back (:mod:`headroom.transforms.json_format`).

The proxy never needs this: it sends the notation to the model. It exists to prove the
notation is lossless — the tests decode what :func:`~headroom.transforms.json_format.encode`
wrote and compare it with the original values.
"""

from __future__ import annotations

import json
import re

from headroom.transforms.base import MISSING
from headroom.transforms.json_format import LITERALS, NUMBER, RawNumber

_raw = json.JSONDecoder(parse_float=RawNumber, parse_constant=RawNumber)
_TABLE_START = re.compile(r"\[\n# (\d+) rows: ")
_KEYED_START = re.compile(r"\{\n# (\d+) entries: \(key\),")


def decode(text: str):
    """Inverse of :func:`encode` for lossless output (no omitted rows)."""
    value, end = _Decoder(text).value(0)
    if text[end:].strip():
        raise ValueError("trailing data")
    return value


class _Decoder:
    def __init__(self, text: str) -> None:
        self.s = text

    def value(self, i: int):
        s = self.s
        c = s[i]
        if c == "{":
            m = _KEYED_START.match(s, i)
            if m:
                return self.table(m, keyed=True)
            obj: dict = {}
            i += 1
            if s[i] == "}":
                return obj, i + 1
            while True:
                key, i = _raw.raw_decode(s, i)
                assert s[i] == ":"
                obj[key], i = self.value(i + 1)
                if s[i] == ",":
                    i += 1
                    continue
                assert s[i] == "}"
                return obj, i + 1
        if c == "[":
            m = _TABLE_START.match(s, i)
            if m:
                return self.table(m)
            items: list = []
            i += 1
            if s[i] == "]":
                return items, i + 1
            while True:
                item, i = self.value(i)
                items.append(item)
                if s[i] == ",":
                    i += 1
                    continue
                assert s[i] == "]"
                return items, i + 1
        return _raw.raw_decode(s, i)

    def table(self, m: re.Match, keyed: bool = False):
        s = self.s
        count = int(m.group(1))
        line_end = s.index("\n", m.end())
        paths = _parse_header(s[m.end():line_end])
        i = line_end + 1
        rows = []
        keys = []
        for _ in range(count):
            if keyed:
                key, i = self.cell(i)
                assert s[i] == ","
                i += 1
                keys.append(key if type(key) is str else str(key))
            item: dict = {}
            for n, path in enumerate(paths):
                v, i = self.cell(i)
                if v is not MISSING:
                    target = item
                    for seg in path[:-1]:
                        target = target.setdefault(seg, {})
                    target[path[-1]] = v
                expected = "," if n < len(paths) - 1 else "\n"
                assert s[i] == expected, (s[i - 20:i + 20], expected)
                i += 1
            rows.append(item)
        assert s[i] == ("}" if keyed else "]")
        if keyed:
            return dict(zip(keys, rows)), i + 1
        return rows, i + 1

    def cell(self, i: int):
        s = self.s
        c = s[i]
        if c in ",\n":
            return MISSING, i
        if c in '"[{':
            if c == '"':
                return _raw.raw_decode(s, i)
            return self.value(i)
        j = i
        while s[j] not in ",\n":
            j += 1
        token = s[i:j]
        if token in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token], j
        if token in LITERALS:
            return RawNumber(token), j
        if NUMBER.fullmatch(token):
            return _raw.decode(token), j
        return token, j


def _parse_header(text: str) -> list[tuple[str, ...]]:
    paths = []
    i = 0
    segs: list[str] = []
    while i <= len(text):
        if i < len(text) and text[i] == '"':
            seg, i = _raw.raw_decode(text, i)
        else:
            j = i
            while j < len(text) and text[j] not in ".,":
                j += 1
            seg, i = text[i:j], j
        segs.append(seg)
        if i >= len(text) or text[i] == ",":
            paths.append(tuple(segs))
            segs = []
            i += 1
            if i > len(text):
                break
        else:
            i += 1  # "."
    return paths
