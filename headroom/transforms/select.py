"""Which items of a long list to keep when a compressor must drop some.

Shared by the JSON, table and log compressors so that "lossy" means the same everywhere:
keep the head and the tail (orientation), anomalies (errors, rare statuses, numeric
outliers: usually why someone is looking), and every item that mentions a selective term of
the user's question. Everything here is deterministic: ties break by position.
"""

from __future__ import annotations

from collections import Counter
from statistics import median

from headroom.transforms.base import MISSING, Limits
from headroom.transforms.scan import Joined, Word
from headroom.transforms.terms import Terms

# Words that mark a failure or an unusual state. Most match inside words so that
# "ValueError", "NullPointerException" and "ErrImagePull" count; short ones need boundaries.
ERROR_WORDS: tuple[Word, ...] = tuple(
    (w, "") for w in (
        "error", "exception", "fail", "fatal", "panic", "traceback", "critical", "denied",
        "refused", "reject", "timeout", "timed out", "abort", "crash", "backoff", "oomkill",
        "unhealthy", "unavailable", "invalid", "declined", "cancelled", "canceled",
        "degraded", "expired", "violation", "segfault", "segmentation fault",
    )
) + (("warn", "w"), ("warning", ""), ("err", "w"), ("killed", "w"), ("down", "w"))

_STATUS_WORDS = ("status", "state", "result", "conclusion", "outcome", "level", "severity",
                 "health", "phase", "error", "reason", "code", "success")


def status_like(name: str) -> bool:
    """Whether a column's values say how something went (its rare values matter most)."""
    low = name.lower()
    return low == "ok" or low.endswith(".ok") or any(w in low for w in _STATUS_WORDS)


def term_hits(texts: list[str], terms: Terms, limits: Limits, joined: Joined | None = None) -> list[int]:
    """Indices of texts that contain a *selective* question term.

    A term found in more than ``max_term_share`` of the texts (say "user" in a user list),
    or in more texts than we would keep (``max_matches``), says nothing about which item the
    question is about, so it is ignored.
    """
    if not terms or not texts:
        return []
    cap = max(2, min(int(limits.max_term_share * len(texts)), limits.max_matches))
    found = (joined or Joined(texts)).texts_with(terms.scan_words, limit=cap)
    return sorted(found)[: limits.max_matches]


def rare_term_scores(texts: list[str], terms: Terms, limits: Limits) -> tuple[dict[int, float], dict[int, set[str]]]:
    """Which of ``texts`` (records, hunks) the question's words point at, and how strongly: each
    word found in at most the capped number of texts gives each of them ``1 / hits``, so a rare
    word outweighs a common one; a word in more texts than that says nothing and counts for
    none. Returns (text index → score, text index → the words found in it)."""
    cap = max(2, min(int(limits.max_term_share * len(texts)), limits.max_matches))
    joined = Joined(texts)
    score: dict[int, float] = {}
    words: dict[int, set[str]] = {}
    for word, boundary in terms.scan_words:
        hits = joined.find_word(word, boundary, cap)
        if not hits or len(hits) > cap:
            continue
        for i in hits:
            score[i] = score.get(i, 0.0) + 1.0 / len(hits)
            words.setdefault(i, set()).add(word)
    return score, words


def error_hits(texts: list[str], max_share: float = 0.3, joined: Joined | None = None) -> list[int]:
    """Indices of texts with failure words, unless such texts are the norm, not the exception."""
    cap = max(3, int(max_share * len(texts)))
    hits = sorted((joined or Joined(texts)).texts_with(ERROR_WORDS, limit=cap))
    return [] if len(hits) > cap else hits


_NUMERIC_TYPES = (int, float)


def column_anomalies(name: str, values: list, numbers: list | None = None) -> list[tuple[int, int]]:
    """(score, index) pairs for unusual values in one column.

    Rare categories: in a low-cardinality column, a value held by at most 3% of rows; in a
    high-cardinality one, a rare *shape* (null, empty, missing among present values).
    Outliers: robust z-score (median/MAD) above 6 (where the MAD is 0, see :func:`_spikes`).
    ``numbers`` gives each row's numeric value (or None) when it differs from ``values``
    (numbers kept as text).
    """
    n = len(values)
    if n < 10:
        return []
    out: list[tuple[int, int]] = []
    rare_cap = max(1, int(0.03 * n))
    score = 3 if status_like(name) else 2
    try:
        counts = Counter(values)
    except TypeError:  # nested objects: compare shapes only
        counts = None
    if counts is not None and 1 < len(counts) <= max(6, n // 20):
        rare = {v for v, c in counts.items() if c <= rare_cap}
        if rare:
            out.extend((score, i) for i, v in enumerate(values) if v in rare)
    elif None in values or "" in values or MISSING in values:
        out.extend((score, i) for i in _rare_shapes(values, rare_cap))
    nums = numbers if numbers is not None else [v if type(v) in _NUMERIC_TYPES else None for v in values]
    present_nums = [x for x in nums if x is not None]
    # Identifiers and timestamps climb steadily; a "spike" there means nothing.
    if len(present_nums) >= 10 and present_nums != sorted(present_nums):
        mid = median(present_nums)
        mad = median([abs(x - mid) for x in present_nums])
        if mad > 0:
            limit = 6 * 1.4826 * mad
            out.extend((2, i) for i, x in enumerate(nums) if x is not None and abs(x - mid) > limit)
        else:
            out.extend((2, i) for i in _spikes(nums, present_nums, mid, rare_cap))
    return out


def _spikes(nums: list, present: list, mid: float, rare_cap: int) -> list[int]:
    """Outliers in a column where most values are equal (``%CPU`` of idle processes: 0.0):
    the MAD is 0 there, so the mean deviation stands in, and only a rare few may stand out."""
    spread = sum(abs(x - mid) for x in present) / len(present)
    if spread == 0:
        return []
    limit = 6 * 1.2533 * spread
    hits = [i for i, x in enumerate(nums) if x is not None and abs(x - mid) > limit]
    return hits if len(hits) <= rare_cap else []


def _rare_shapes(values: list, rare_cap: int) -> list[int]:
    """Rows whose shape (null, empty string, missing, present) is rare in the column."""
    groups: dict[str, list[int]] = {"null": [], "empty": [], "missing": [], "present": []}
    for i, v in enumerate(values):
        if v is None:
            groups["null"].append(i)
        elif v is MISSING:
            groups["missing"].append(i)
        elif type(v) is str and not v:
            groups["empty"].append(i)
        else:
            groups["present"].append(i)
    if sum(1 for ix in groups.values() if ix) < 2:
        return []
    return sorted(i for ix in groups.values() if len(ix) <= rare_cap for i in ix)


def string_errors(name: str, values: list) -> list[tuple[int, int]]:
    """(score, index) pairs for string cells with failure words, if such cells are rare.

    Only distinct strings are scanned: a status column of 500 rows has a handful.
    """
    try:
        distinct = [v for v in set(values) if type(v) is str]
    except TypeError:  # unhashable cells (nested objects)
        distinct = list({v for v in values if type(v) is str})
    if not distinct:
        return []
    bad_indices = Joined(distinct).texts_with(ERROR_WORDS)
    if not bad_indices:
        return []
    bad = {distinct[i] for i in bad_indices}
    hits = [i for i, v in enumerate(values) if type(v) is str and v in bad]
    if len(hits) > max(3, int(0.2 * len(values))):
        return []
    score = 3 if status_like(name) else 1
    return [(score, i) for i in hits]


def rank_anomalies(scored: list[tuple[int, int]], limit: int) -> list[int]:
    """Best-scored distinct indices (ties broken by position), at most ``limit``."""
    best: dict[int, int] = {}
    for score, i in scored:
        if score > best.get(i, 0):
            best[i] = score
    ordered = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    return [i for i, _ in ordered[:limit]]


def keep_indices(n: int, head: int, tail: int, *extra: list[int]) -> list[int]:
    """Sorted union of the first ``head``, the last ``tail`` and every extra index."""
    kept = set(range(min(head, n)))
    kept.update(range(max(0, n - tail), n))
    for group in extra:
        kept.update(group)
    return sorted(kept)


def gaps(kept: list[int], n: int) -> list[tuple[int, int]]:
    """(start, stop) ranges of the indices in ``range(n)`` that are not in sorted ``kept``."""
    out = []
    prev = -1
    for i in kept:
        if i > prev + 1:
            out.append((prev + 1, i))
        prev = i
    if prev < n - 1:
        out.append((prev + 1, n))
    return out
