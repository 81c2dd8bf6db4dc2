"""Label values for the metrics, kept to a bounded set.

Every distinct label value is a new time series in every worker's file and in Prometheus,
and some values come from clients (the ``model`` field of a request body). A client that
sends a million made-up model names must not be able to grow the metrics without limit,
so each label goes through a :class:`BoundedLabel` that lets in at most a fixed number of
values per process and answers :data:`OTHER` for the rest.
"""

from __future__ import annotations

import re

OTHER = "other"
NONE = "none"  # the request named no model (passthrough routes such as /v1/models)

_SAFE = re.compile(r"[A-Za-z0-9._:/@+-]{1,80}")

# Error kinds (``RequestOutcome.error``) that mean the upstream failed us, as opposed to the
# client (bad body, disconnect) or Headroom's own guards. ``http_502``/``http_504`` are the
# proxy's answers when the upstream broke off or timed out before the response started.
_UPSTREAM_ERROR_PREFIXES = ("upstream_", "stream_")
_UPSTREAM_ERROR_KINDS = frozenset({"http_502", "http_503", "http_504"})


class BoundedLabel:
    """At most ``limit`` distinct values besides ``known``; anything else reads ``other``.

    Admission is first come, first served within one process, and a value once admitted
    keeps its label for the life of the process, so a series never changes name midway.
    Values must look like identifiers (no spaces, quotes or control characters, at most 80
    characters) so nothing odd reaches the exposition format.
    """

    __slots__ = ("_room", "_seen")

    def __init__(self, limit: int, known: tuple[str, ...] = ()) -> None:
        self._seen: set[str] = {OTHER, NONE, *known}
        self._room = limit

    def __call__(self, value: str | None, admit: bool = True) -> str:
        if value is None:
            return NONE
        if value in self._seen:
            return value
        if admit and self._room > 0 and _SAFE.fullmatch(value):
            self._seen.add(value)
            self._room -= 1
            return value
        return OTHER


def upstream_error_kind(error: str | None) -> str | None:
    """The ``kind`` label when ``error`` is the upstream's failure, else ``None``."""
    if error is None:
        return None
    if error.startswith(_UPSTREAM_ERROR_PREFIXES) or error in _UPSTREAM_ERROR_KINDS:
        return error
    return None
