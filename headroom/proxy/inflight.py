"""A bound on the request bytes one worker holds at once.

Why: every request body stays in memory until its answer has gone out (for a stream, minutes),
and a parsed JSON body costs several times its size. Many concurrent large bodies could
otherwise exhaust a worker's memory and take every other request down with it. Beyond the
bound a request is refused at once with a native 429 and ``retry-after`` (SDKs back off and
retry); one request alone is always accepted, whatever its size (``--max-body-mb`` bounds it).
"""

from __future__ import annotations

from headroom.proxy.guards import Refused

RETRY_AFTER_S = 1


class InFlightBytes:
    """This worker's held request bytes (one event loop: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def hold(self, size: int) -> int:
        """Count ``size`` bytes as held, or raise :class:`Refused`; give the result to :meth:`release`."""
        if self.held and self.held + size > self.limit:
            raise Refused("inflight", f"Headroom is holding {self.held // 2**20} MiB of requests in this worker "
                          f"(limit {self.limit // 2**20} MiB): retry shortly", "overloaded",
                          {"retry-after": str(RETRY_AFTER_S)})
        self.held += size
        return size

    def release(self, size: int) -> None:
        self.held -= size
