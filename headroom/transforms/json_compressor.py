"""JSON tool output: lossless compaction first, lossy trimming only for big documents.

Lossless (always): minimal separators, unicode as is, key order and number spelling kept,
arrays of similar objects as tables (see :mod:`json_format`). That alone usually halves a
pretty-printed API response.

Lossy (only for documents longer than ``lossy_min_chars`` whose lossless form is too): arrays
longer than ``max_items`` keep their head and tail, anomalies (rare statuses, error words,
numeric outliers) and every element that mentions a selective term of the question. Each gap
is shown in place (``… 212 rows omitted``) and one CCR marker on the first line says how many
items were left out and under which key the original can be retrieved.

Tables are judged column by column on their values (distinct values only, where a column
repeats itself), and only the rows that are kept are ever encoded, which is what keeps a
100 KB document within a few milliseconds.
"""

from __future__ import annotations

import json

from headroom.transforms import ccr
from headroom.transforms.base import MISSING, Brief, Compressed
from headroom.transforms.json_format import GAP, RawNumber, cell, encode, loads
from headroom.transforms.json_prune import Pruner
from headroom.transforms.scan import Joined
from headroom.transforms.select import (
    column_anomalies,
    error_hits,
    keep_indices,
    rank_anomalies,
    string_errors,
    term_hits,
)
from headroom.transforms.terms import Terms

_UNPARSED = object()
MIN_SAVING = 0.05  # below 5% a rewrite is not worth sending different bytes
_NUMBER_TYPES = {int, float, RawNumber}
_PLAIN_NUMBERS = {int, float}
_RAW_ONLY = {RawNumber}
_SCALAR_TEXT = {str, type(None), type(MISSING)}


def _number(v):
    t = type(v)
    if t is int or t is float:
        return v
    if t is RawNumber:
        try:
            return float(v)
        except ValueError:  # NaN / Infinity spelled as constants
            return None
    return None


def _numbers(values: list, types: set) -> list:
    if types <= _PLAIN_NUMBERS:
        return values
    if types == _RAW_ONLY:
        try:
            return list(map(float, values))
        except ValueError:
            pass
    if types & _NUMBER_TYPES:
        return [_number(v) for v in values]
    return [None] * len(values)


def _column_terms(values: list, types: set, terms: Terms, cap: int, found: dict[str, set[int] | None]) -> None:
    """Add to ``found`` (term → row indices) the rows whose value in this column has a term.

    A term found in more than ``cap`` distinct values cannot be selective: it goes into
    ``found`` with ``None`` so that no other column can make it look selective.
    """
    words = terms.scan_words
    if types <= _SCALAR_TEXT:
        distinct = [v for v in set(values) if type(v) is str]
        joined = Joined(distinct)
        for word, boundary in words:
            hits = joined.find_word(word, boundary, cap)
            if len(hits) > cap:
                found[word] = None
                continue
            rows = found.setdefault(word, set()) if hits else None
            if rows is None:  # no hit here, or too many in an earlier column
                continue
            matching = {distinct[i] for i in hits}
            rows.update(i for i, v in enumerate(values) if v in matching)
        return
    if types <= _NUMBER_TYPES | {type(None), type(MISSING)}:
        if not terms.has_digits:
            return  # a number can only contain a term that has digits
        texts = [v if type(v) is RawNumber else ("" if v is None or v is MISSING else repr(v)) for v in values]
    else:
        # Nested values: one C-speed dump of the whole column says whether any term is in
        # it at all (usually none is); only then is each cell encoded on its own.
        whole = Joined([_dump_column(values)])
        words = tuple(w for w in words if whole.find_word(*w, 0))
        if not words:
            return
        texts = ["" if v is MISSING else cell(v) for v in values]
    joined = Joined(texts)
    for word, boundary in words:
        hits = joined.find_word(word, boundary, cap)
        if len(hits) > cap:
            found[word] = None
        elif hits and (rows := found.setdefault(word, set())) is not None:
            rows.update(hits)


_dump = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=lambda o: None).encode


def _dump_column(values: list) -> str:
    try:
        return _dump(values)
    except (TypeError, ValueError):  # e.g. lone surrogates: fall back to the exact path
        return "".join(cell(v) for v in values if v is not MISSING)


class Trimmer:
    """Hooks for :func:`json_format.encode`: count tables and, in lossy mode, choose rows
    (:mod:`json_value` asks it the same about a value it keeps as JSON)."""

    def __init__(self, brief: Brief, lossy: bool) -> None:
        self.brief = brief
        self.lossy = lossy
        self.tables = 0
        self.omitted = 0  # items dropped
        self.total = 0  # items in the arrays that were trimmed
        self.kept = 0  # items kept in those arrays

    def _record(self, n: int, kept: list[int]) -> list[int] | None:
        if len(kept) >= n:
            return None
        self.omitted += n - len(kept)
        self.total += n
        self.kept += len(kept)
        return kept

    def table(self, items: list, paths, columns: list[list], keys: list[str] | None) -> list[int] | None:
        self.tables += 1
        lim = self.brief.limits
        n = len(items)
        if not self.lossy or n <= lim.max_items:
            return None
        scored: list[tuple[int, int]] = []
        found: dict[str, set[int] | None] = {}
        terms = self.brief.terms
        cap = max(2, min(int(lim.max_term_share * n), lim.max_matches))
        if keys is not None and terms:
            _column_terms(keys, {str}, terms, cap, found)
        for path, values in zip(paths, columns):
            name = ".".join(path)
            types = set(map(type, values))
            scored.extend(column_anomalies(name, values, _numbers(values, types)))
            if str in types:
                scored.extend(string_errors(name, values))
            if terms:
                _column_terms(values, types, terms, cap, found)
        matches = sorted({i for rows in found.values() if rows is not None and len(rows) <= cap
                          for i in rows})[: lim.max_matches]
        anomalies = rank_anomalies(scored, lim.max_anomalies)
        return self._record(n, keep_indices(n, lim.head_items, lim.tail_items, anomalies, matches))

    def array_kept(self, items: list, parts: list[str]) -> list[int] | None:
        """Indices of the items of an array that is not a table to keep (``parts``: their
        encodings), or None for all of them."""
        lim = self.brief.limits
        n = len(items)
        if not self.lossy or n <= lim.max_items:
            return None
        numbers = [_number(v) for v in items]
        scored = column_anomalies("", [v if x is None else x for v, x in zip(items, numbers)], numbers)
        joined = Joined(parts)
        scored.extend((1, i) for i in error_hits(parts, max_share=0.2, joined=joined))
        matches = term_hits(parts, self.brief.terms, lim, joined=joined)
        return self._record(n, keep_indices(n, lim.head_items, lim.tail_items,
                                            rank_anomalies(scored, lim.max_anomalies), matches))

    def array(self, items: list, parts: list[str]) -> list[str]:
        kept = self.array_kept(items, parts)
        if kept is None:
            return parts
        n = len(items)
        out: list[str] = []
        prev = -1
        for i in kept:
            if i > prev + 1:
                out.append('"' + GAP.format(count=i - prev - 1, unit="items") + '"')
            out.append(parts[i])
            prev = i
        if prev < n - 1:
            out.append('"' + GAP.format(count=n - prev - 1, unit="items") + '"')
        return out


def compress(text: str, brief: Brief, value=_UNPARSED, prefix: str = "", suffix: str = "") -> Compressed | None:
    """Compress a JSON document; pass ``value`` when it has already been parsed, and the
    ``prefix``/``suffix`` text around it in ``text`` (kept as is) if there is any."""
    if value is _UNPARSED:
        value = loads(text)
    if not isinstance(value, (dict, list)):
        return None
    limit = brief.limits.lossy_min_chars
    lossy = len(text) > limit
    pruner = Pruner(brief.terms, brief.limits)
    original = value
    if lossy:  # big objects and long strings (json_prune); arrays are trimmed while encoding
        value = pruner.prune(value)
    trim = Trimmer(brief, lossy=lossy)
    out = encode(value, table_hook=trim.table, array_hook=trim.array)
    if pruner.omitted and len(out) <= limit:  # it would have fitted without pruning?
        whole = Trimmer(brief, lossy=False)
        lossless = encode(original, table_hook=whole.table)
        if len(lossless) <= limit:
            value, pruner.omitted, trim, out = original, 0, whole, lossless
    if trim.omitted and not pruner.omitted:
        # Would the lossless form have fitted after all? (Estimated: kept rows are typical.)
        lossless_len = len(out) * (trim.kept + trim.omitted) / max(1, trim.kept)
        if lossless_len <= limit:
            trim = Trimmer(brief, lossy=False)
            out = encode(value, table_hook=trim.table)
    transforms = ["json:table" if trim.tables else "json:minify"]
    out = prefix + out + suffix
    omitted = trim.omitted + pruner.omitted
    if pruner.omitted:
        out = ccr.marker(omitted, trim.total + pruner.omitted, "items", brief.ccr_key) + "\n" + out
        transforms.append("json:prune")
    elif trim.omitted:
        out = ccr.marker(trim.omitted, trim.total, "items", brief.ccr_key) + "\n" + out
        transforms.append("json:lossy")
    elif len(out) > len(text) * (1 - MIN_SAVING):
        return None
    if len(out) >= len(text):
        return None
    return Compressed(out, tuple(transforms), omitted)
