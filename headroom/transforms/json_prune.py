"""Nested JSON objects (package manifests, OpenAPI documents, Kubernetes objects, ``sysconfig``
dumps): what :mod:`json_compressor`'s array trimming does not reach.

Arrays of similar objects are trimmed as tables; but a configuration-like document is mostly
dictionaries (a thousand variables in one object) and long strings (a package's whole README
as its ``description``). Before encoding, in lossy mode only:

* an object with more than ``max_items`` keys keeps the keys whose name or value holds a
  selective question term (and so every ancestor of what the question names), its first
  ``head_items`` and last ``tail_items`` keys; one ``"…"`` key says how many went;
* a string longer than :data:`LONG` characters keeps its opening and, if the question names
  something in it, the passage around the first mention, with a note of the characters left out.

The result is valid JSON of the same shape (the same objects, arrays and types along every kept
path). A pure function of the value and the terms.
"""

from __future__ import annotations

import json

from headroom.transforms.base import Limits
from headroom.transforms.scan import Joined
from headroom.transforms.terms import Terms

LONG = 300  # characters: a value longer than this is text, not an answer to look up
OPENING = 120
AROUND = 150
GAP_KEY = "\u2026"


def _dump(value) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return ""


class Pruner:
    def __init__(self, terms: Terms, limits: Limits) -> None:
        self.words = terms.scan_words
        self.limits = limits
        self.omitted = 0  # keys and characters' passages left out (counted once each)

    def prune(self, value):
        if isinstance(value, str):
            return self._string(value) if len(value) > LONG else value
        if isinstance(value, list):
            return [self.prune(item) for item in value]
        if isinstance(value, dict):
            return self._object(value)
        return value

    def _string(self, value: str) -> str:
        low = value.lower()
        hit = min((p for p in (low.find(w) for w, _ in self.words) if p >= 0), default=-1)
        if hit >= 0 and hit < OPENING:
            hit = -1  # the opening shows it already
        keep_to = OPENING
        parts = [value[:OPENING]]
        if hit >= 0:
            start, stop = max(OPENING, hit - AROUND), min(len(value), hit + AROUND)
            parts.append(f"\u2026 [{start - OPENING} chars] \u2026" if start > OPENING else "")
            parts.append(value[start:stop])
            keep_to = stop
        if keep_to < len(value):
            parts.append(f" \u2026 [{len(value) - keep_to} more chars]")
        out = "".join(parts)
        if len(out) >= len(value):
            return value
        self.omitted += 1
        return out

    def _object(self, value: dict) -> dict:
        lim = self.limits
        keys = list(value)
        n = len(keys)
        if n <= lim.max_items:
            return {k: self.prune(v) for k, v in value.items()}
        texts = [f"{k}: {_dump(value[k])}" for k in keys]
        cap = max(2, min(int(lim.max_term_share * n), lim.max_matches))
        matches = Joined(texts).texts_with(self.words, limit=cap) if self.words else {}
        kept = set(range(min(lim.head_items, n))) | set(range(max(0, n - lim.tail_items), n))
        kept.update(sorted(matches)[: lim.max_matches])
        out = {keys[i]: self.prune(value[keys[i]]) for i in sorted(kept)}
        dropped = n - len(kept)
        if dropped and GAP_KEY not in value:
            out[GAP_KEY] = f"{dropped} keys omitted"
            self.omitted += dropped
        elif dropped:
            return {k: self.prune(v) for k, v in value.items()}  # no key free for the note: keep all
        return out
