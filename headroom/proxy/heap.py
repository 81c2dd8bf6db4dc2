"""The cyclic garbage collector, set for a server: a large heap made at start-up, and many
requests in flight whose objects are freed by reference counting.

Why: with Python's defaults, the collector took some 10-20 % of a worker's CPU at 64
connections (py-spy: ``gc_collect_main`` under whatever allocation triggered it; see
``docs/benchmarks.md``), while finding nothing to collect: the request path makes no
reference cycles. Two things made it expensive:

- *Full collections walk everything.* A worker starts with some 50,000 objects that live
  as long as it does (modules, classes, routes, the formats' tables); each full collection
  walked all of them again (about 25 ms). :func:`gc.freeze` moves what is alive at start-up
  into the collector's permanent generation, never walked again.
- *Young collections ran every few requests.* A young collection runs once 700 more
  objects have been made than freed. Sixty-four requests in flight hold about ten thousand
  objects between them, so the count kept passing 700 as requests came and went, and each
  collection walked the in-flight requests' objects (all of them alive) and promoted them,
  to be walked again in the older generations. :data:`YOUNG_THRESHOLD` lets the count swing
  with the requests in flight without a collection; it is still reached, and cycles
  collected, when objects really accumulate (a few MB of them at most).

Nothing else changes: every object is still freed by reference counting as soon as it is
unused, and cycles made after start-up are collected as before. (Workers forked from one
parent also keep more pages shared: the collector no longer writes to frozen objects.)
"""

from __future__ import annotations

import gc

#: Objects made and not yet freed (in excess of those freed) that start a young
#: collection: Python's default is 700.
YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Freeze the start-up heap and raise the young threshold: call once per process, when
    it is ready to serve and before the first request."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
