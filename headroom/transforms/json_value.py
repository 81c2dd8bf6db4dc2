"""JSON tool output that goes back as JSON: a value the format holds as an object or array,
not as text (a Gemini ``functionResponse``'s ``response`` values).

The JSON compressor writes a notation (tables, ``… N rows omitted`` lines, a marker line):
text, which would turn the object the client sent into a string. Here the result is JSON of
the same shape, which the format parses and puts back in the value's place. Only the JSON
compressor's lossy steps apply (compacting gains nothing: the value is written compactly with
the rest of the body anyway), to values whose compact JSON is longer than ``lossy_min_chars``,
and they choose what they choose there (:class:`~headroom.transforms.json_compressor.Trimmer`,
:class:`~headroom.transforms.json_prune.Pruner`):

* big objects and long strings are pruned (a ``"…"`` key says how many keys went);
* an array longer than ``max_items`` keeps its head and tail, its anomalies and the items
  with a question term (an array of similar objects judged column by column, as a table);
  each run of dropped items is one string in its place: ``"… 212 rows omitted"``;
* one CCR marker names the key the original is retrieved with: the first item of an array,
  or the first key of an object, :data:`MARKER_KEY`.

Every container stays where it was, with its type; an array may gain gap strings among its
items, an object a note key (``"…"``, :data:`MARKER_KEY`). A pure function of the text and
the brief, so the memo and the prefix guard treat it as any compressor's output.
"""

from __future__ import annotations

from headroom.transforms import ccr
from headroom.transforms.base import Brief, Compressed
from headroom.transforms.json_compressor import Trimmer
from headroom.transforms.json_format import (
    MIN_DICT_ROWS,
    encode,
    loads,
    row_values,
    table_columns,
    table_paths,
    with_gaps,
)
from headroom.transforms.json_prune import Pruner

MARKER_KEY = "[headroom]"  # the object key holding the CCR marker


def compress(text: str, brief: Brief) -> Compressed | None:
    """``text``: the JSON of an object or array. The result's text is JSON of the same shape
    (numbers spelled as in ``text``); None: send the value unchanged."""
    if len(text) <= brief.limits.lossy_min_chars:
        return None
    value = loads(text)
    if type(value) is not dict and type(value) is not list:
        return None
    pruner = Pruner(brief.terms, brief.limits)
    trim = Trimmer(brief, lossy=True)
    value = _trimmed(pruner.prune(value), trim)
    omitted = trim.omitted + pruner.omitted
    if not omitted:
        return None
    note = ccr.marker(omitted, trim.total + pruner.omitted, "items", brief.ccr_key)
    if type(value) is list:
        value = [note, *value]
    elif MARKER_KEY in value:
        return None  # no key free for the note: the original stays
    else:
        value = {MARKER_KEY: note, **value}
    out = encode(value, tables=False)
    if len(out) >= len(text):
        return None
    return Compressed(out, ("json:value", "json:prune" if pruner.omitted else "json:lossy"), omitted)


def _trimmed(value, trim: Trimmer):
    """``value`` with its long arrays trimmed, walked as :func:`json_format.encode` walks it
    (a table's rows are not walked into)."""
    t = type(value)
    if t is dict:
        if len(value) >= MIN_DICT_ROWS and table_columns(list(value.values())) is not None:
            # A keyed table: its rows are cells, not walked into. One longer than max_items
            # has been pruned to the keys asked about (and is no table then: its "…" key
            # holds a string), so there is nothing left to trim.
            return value
        return {k: _trimmed(v, trim) for k, v in value.items()}
    if t is list:
        columns = table_columns(value)
        if columns is not None:  # an array of similar objects: judged column by column
            paths = table_paths(value, columns)
            kept = trim.table(value, paths, row_values(value, paths), None)
            return value if kept is None else with_gaps([value[i] for i in kept], kept, len(value), "rows")
        items = [_trimmed(item, trim) for item in value]
        if len(items) <= trim.brief.limits.max_items:
            return items
        kept = trim.array_kept(value, [encode(item) for item in items])
        return items if kept is None else with_gaps([items[i] for i in kept], kept, len(items), "items")
    return value

