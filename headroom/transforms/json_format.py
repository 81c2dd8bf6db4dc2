"""Compact JSON with tables: the lossless notation the JSON compressor emits.

It is compact JSON (no insignificant whitespace, unicode kept as is, key order kept) except
that an array of similar objects is written as a table, schema once and then one row per
object::

    {"total":3,"items":[
    # 3 rows: id,name,address.city,address.zip,note
    1,Ann Lee,Berlin,"10115",null
    2,Bo,Paris,"75001",""
    3,Cy,Rome,00118,
    ]}

Cells: ``null``/``true``/``false``/numbers are JSON literals; a string is written bare unless
it could be misread (empty, looks like a literal or number, has a comma, quote-first,
surrounding spaces, control characters), in which case it is a JSON string; nested arrays and
objects are compact JSON; an empty cell means the object has no such key. A dotted column
(``address.city``) flattens a nested object that has the same keys in every row; a column
name that itself contains a dot or comma is JSON-quoted. An object whose values are five or
more similar objects becomes a keyed table, its keys in a first ``(key)`` column::

    {"flags":{
    # 5 entries: (key),enabled,owner
    new_checkout,true,ana@acme.io
    "404",false,ops@acme.io
    beta_search,false,
    dark_mode,true,ui@acme.io
    "true",true,null
    }}

:func:`headroom.transforms.json_decode.decode` inverts :func:`encode` exactly, which is how
the tests prove the notation loses nothing. (Only lossless output decodes: in lossy output ``… N rows omitted`` lines
stand where rows were dropped.) A document with duplicate keys in one object is read as JSON
parsers read it, last value wins.

Numbers keep their original spelling (``1.10`` stays ``1.10``): floats are parsed as
:class:`RawNumber`, a ``str`` subclass written back verbatim.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from operator import itemgetter

from headroom.transforms.base import MISSING

__all__ = ["RawNumber", "TableHook", "encode", "encode_string", "loads", "with_gaps"]


class RawNumber(str):
    """A JSON float literal kept as written, so re-encoding cannot change it."""

    __slots__ = ()


_decoder = json.JSONDecoder(parse_float=RawNumber, parse_constant=RawNumber)
RAW_DECODER = _decoder  # ``raw_decode`` finds a document inside longer text


def loads(text: str):
    """Parse JSON keeping float literals exact (duplicate keys: last wins, as in JSON)."""
    return _decoder.decode(text)


_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f"\\\ud800-\udfff\u2028\u2029]')
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def encode_string(s: str) -> str:
    """JSON string literal with unicode kept readable (lone surrogates escaped)."""
    if not _NEEDS_ESCAPE.search(s):
        return '"' + s + '"'
    if _SURROGATE.search(s):
        return json.dumps(s, ensure_ascii=True)
    return json.dumps(s, ensure_ascii=False)


# A string may be written bare in a cell if it cannot be mistaken for anything else. Checked
# with str methods, not a regex: this runs for every string cell and regexes cost 3-4x more.
_BAD_FIRST = frozenset('"[{#\u2026')
NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_NUMBER_CHARS = "0123456789.-+eE"
LITERALS = frozenset(("true", "false", "null", "NaN", "Infinity", "-Infinity"))
_BARE_NAME = re.compile(r"[A-Za-z_$@][\w$@\-]*")

MIN_TABLE_ROWS = 3
MIN_DICT_ROWS = 5  # an object whose values are ≥ 5 similar objects becomes a keyed table
KEY_COLUMN = "(key)"


def _cell_string(s: str) -> str:
    if (
        s
        and s.isprintable()  # no control, separator-line or surrogate characters
        and "," not in s
        and s[0] not in _BAD_FIRST
        and s.strip() is s  # CPython returns the same object when nothing is stripped
        and s not in LITERALS
        and not (not s.strip(_NUMBER_CHARS) and NUMBER.fullmatch(s))
    ):
        return s
    return encode_string(s)


def _encode_compact(v) -> str:
    """Plain compact JSON (no tables): used inside cells so that a row stays one line."""
    t = type(v)
    if t is str:
        return encode_string(v)
    if t is RawNumber:
        return v
    if t is dict:
        return "{" + ",".join(encode_string(k) + ":" + _encode_compact(x) for k, x in v.items()) + "}"
    if t is list:
        return "[" + ",".join(_encode_compact(x) for x in v) + "]"
    return _scalar(v)


def _scalar(v) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, RawNumber):
        return str.__str__(v)
    if isinstance(v, (int, float)):
        return json.dumps(v)
    if isinstance(v, str):
        return encode_string(v)
    if isinstance(v, dict):
        return _encode_compact(v)
    if isinstance(v, list):
        return _encode_compact(v)
    raise TypeError(f"not a JSON value: {type(v).__name__}")


def cell(v) -> str:
    """One table cell for value ``v`` (see the module docstring)."""
    t = type(v)
    if t is str:
        return _cell_string(v)
    if t is RawNumber or t is int:
        return str.__str__(v) if t is RawNumber else int.__repr__(v)
    return _scalar(v)


# --- table schema -------------------------------------------------------------------------


def table_columns(items: list) -> list[str] | None:
    """Union of keys in a consistent order, or None if the list is not table-shaped.

    Table-shaped: at least MIN_TABLE_ROWS objects whose key orders agree with one merged
    order (so every object's key order can be restored) and which fill at least half of
    the cells.
    """
    if len(items) < MIN_TABLE_ROWS:
        return None
    cols: list[str] = []
    pos: dict[str, int] = {}
    seen: set[tuple] = set()
    present = 0
    for item in items:
        if type(item) is not dict or not item:
            return None
        present += len(item)
        keys = tuple(item)
        if keys in seen:
            continue
        seen.add(keys)
        prev = -1
        for k in keys:
            p = pos.get(k)
            if p is None:
                cols.insert(prev + 1, k)
                pos = {c: i for i, c in enumerate(cols)}
                prev += 1
            elif p <= prev:
                return None
            else:
                prev = p
    if present * 2 < len(items) * len(cols):
        return None
    return cols


def _flatten(items: list, col: str) -> list[tuple[str, ...]] | None:
    """Sub-paths of ``col`` if every row holds an object with identical keys there."""
    first = items[0].get(col)
    if type(first) is not dict or not first:
        return None
    keys = tuple(first)
    for item in items:
        v = item.get(col)
        if type(v) is not dict or tuple(v) != keys:
            return None
    paths: list[tuple[str, ...]] = []
    for k in keys:
        sub = _flatten([item[col] for item in items], k)
        if sub is None:
            paths.append((k,))
        else:
            paths.extend((k,) + p for p in sub)
    return paths


def table_paths(items: list, cols: list[str]) -> list[tuple[str, ...]]:
    """Column paths: a column becomes several dotted paths when it can be flattened."""
    paths: list[tuple[str, ...]] = []
    for c in cols:
        sub = _flatten(items, c)
        if sub is None:
            paths.append((c,))
        else:
            paths.extend((c,) + p for p in sub)
    return paths


def _name(seg: str) -> str:
    return seg if _BARE_NAME.fullmatch(seg) and seg not in LITERALS else encode_string(seg)


def header(paths: list[tuple[str, ...]]) -> str:
    return ",".join(".".join(_name(s) for s in p) for p in paths)


def row_values(items: list, paths: list[tuple[str, ...]]) -> list[list]:
    """Per-column value lists (``MISSING`` where a row lacks a top-level key)."""
    columns = []
    for p in paths:
        try:  # every row has the key: C-speed itemgetter chain (flattened paths always do)
            values: Iterable = items
            for seg in p:
                values = map(itemgetter(seg), values)
            columns.append(list(values))
        except KeyError:
            columns.append([item.get(p[0], MISSING) for item in items])
    return columns


def _encode_column(col: list) -> list[str]:
    types = set(map(type, col))
    if types == {int}:
        return list(map(int.__repr__, col))
    if types == {RawNumber}:
        return col  # already the exact literal text
    if types == {str}:
        changed = {v: c for v in set(col) if (c := _cell_string(v)) is not v}
        if not changed:
            return col  # every string can be written bare: the column is its own encoding
        return [changed.get(v, v) for v in col]
    return ["" if v is MISSING else cell(v) for v in col]


def encode_rows(columns: list[list]) -> list[str]:
    """One text line per row."""
    return [",".join(cells) for cells in zip(*map(_encode_column, columns))]


# --- whole documents ----------------------------------------------------------------------

# (items, column paths, column values, keys or None) -> indices of the rows to keep, or None
TableHook = Callable[[list, list[tuple[str, ...]], list[list], "list[str] | None"], "list[int] | None"]
ArrayHook = Callable[[list, list[str]], list[str]]


def encode(value, tables: bool = True, table_hook: TableHook | None = None,
           array_hook: ArrayHook | None = None) -> str:
    """Encode ``value`` compactly, writing table-shaped arrays as tables.

    ``table_hook(items, paths, columns, keys)`` may pick the rows to keep (the lossy
    compressor uses it; only kept rows are then encoded, and each run of dropped rows
    becomes a ``… N rows omitted`` line); ``array_hook(items, parts)`` may replace the
    element encodings of other arrays.
    """

    def table(items: list, keys: list[str] | None) -> str | None:
        cols = table_columns(items)
        if cols is None:
            return None
        paths = table_paths(items, cols)
        columns = row_values(items, paths)
        kept = table_hook(items, paths, columns, keys) if table_hook is not None else None
        if kept is None:
            rows = encode_rows(columns)
            if keys is not None:
                rows = [_cell_string(k) + "," + row for k, row in zip(keys, rows)]
        else:
            rows = encode_rows([[col[i] for i in kept] for col in columns])
            if keys is not None:
                rows = [_cell_string(keys[i]) + "," + row for i, row in zip(kept, rows)]
            rows = with_gaps(rows, kept, len(items), "entries" if keys is not None else "rows")
        if keys is None:
            return f"[\n# {len(items)} rows: {header(paths)}\n" + "\n".join(rows) + "\n]"
        return f"{{\n# {len(items)} entries: {KEY_COLUMN},{header(paths)}\n" + "\n".join(rows) + "\n}"

    def enc(v) -> str:
        t = type(v)
        if t is dict:
            if tables and len(v) >= MIN_DICT_ROWS:
                out = table(list(v.values()), list(v))
                if out is not None:
                    return out
            return "{" + ",".join(encode_string(k) + ":" + enc(x) for k, x in v.items()) + "}"
        if t is list:
            if tables:
                out = table(v, None)
                if out is not None:
                    return out
            parts = [enc(x) for x in v]
            if array_hook is not None:
                parts = array_hook(v, parts)
            return "[" + ",".join(parts) + "]"
        return _scalar(v)

    return enc(value)


GAP = "\u2026 {count} {unit} omitted"


def with_gaps(rows: list, kept: list[int], total: int, unit: str) -> list:
    """Kept rows with one ``… N rows omitted`` line per run of dropped rows (``rows``: the
    kept ones, in order; lines here, items of a JSON array in :mod:`json_value`)."""
    out: list = []
    prev = -1
    for row, i in zip(rows, kept):
        if i > prev + 1:
            out.append(GAP.format(count=i - prev - 1, unit=unit))
        out.append(row)
        prev = i
    if prev < total - 1:
        out.append(GAP.format(count=total - prev - 1, unit=unit))
    return out
