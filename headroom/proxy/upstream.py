"""The pooled upstream client: one :class:`~headroom.proxy.http1.Pool` per worker process,
and the bounded read of an answer's body.

The pool is Headroom's own lean HTTP/1.1 client (:mod:`headroom.proxy.http1`, which says
why); its failures become :class:`UpstreamError` here, so routes answer them in the
provider's own shape.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from headroom.config import ProxyConfig
from headroom.proxy import http1
from headroom.proxy.errors import ProxyError


class UpstreamError(ProxyError):
    """The upstream could not be reached (502) or did not answer in time (504)."""


class AnswerTooLarge(UpstreamError):
    """A non-streamed answer over ``--max-response-mb`` (declared, received or decompressed)."""

    def __init__(self, limit: int) -> None:
        super().__init__(502, f"upstream answer larger than the {limit / 2**20:g} MiB limit (--max-response-mb)",
                         "upstream_response_too_large")


async def read_body(resp: http1.Response, limit: int) -> bytes:
    """The whole body of ``resp``, at most ``limit`` bytes once decompressed, else :class:`AnswerTooLarge`;
    an answer that stalls is a 504, one that breaks off a 502 (:class:`UpstreamError`).

    ``resp.read()`` would hold whatever the upstream sends: a body that claims 10 GB, or a
    0.5 MiB gzip body that expands to 512 MiB. Here a declared ``Content-Length`` over the
    limit is refused before a byte is read, and the body is read in the pieces the client
    hands out (already decompressed, in bounded steps, so a bomb never expands in one go),
    stopping as soon as the running total passes the limit. A compressed body is never larger
    than what it expands to, so counting the decompressed bytes also bounds the bytes received.
    A refused answer's connection is closed, never returned to the pool with the rest of the body still on its way.

    Costs one size check per piece; a small answer arrives in one piece and is returned as
    it is, without a copy.
    """
    declared = resp.content_length
    if declared is not None and declared > limit:
        resp.close()
        raise AnswerTooLarge(limit)
    content = resp.content
    pieces: list[bytes] = []
    total = 0
    try:
        while chunk := await content.readany():
            total += len(chunk)
            if total > limit:
                raise AnswerTooLarge(limit)
            pieces.append(chunk)
    except BaseException as exc:
        resp.close()
        pieces.clear()
        if isinstance(exc, TimeoutError):
            raise UpstreamError(504, "upstream did not finish its answer in time") from None
        if isinstance(exc, http1.ConnectionBroken):
            raise UpstreamError(502, f"upstream answer broke off: {exc}") from None
        raise
    if len(pieces) == 1:
        return pieces[0]
    return b"".join(pieces)


class UpstreamRequest(NamedTuple):
    """One call to the upstream (a named tuple: built for every request, cheaper than a frozen dataclass)."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes | None


class Upstream:
    """Owns the connection pool; sized for many concurrent long-lived streams."""

    def __init__(self, config: ProxyConfig) -> None:
        self._config = config
        self._pool: http1.Pool | None = None

    async def start(self) -> None:
        self._pool = http1.Pool(
            connect_timeout=self._config.connect_timeout,
            read_timeout=self._config.request_timeout,  # between bytes: a stream may last as long as it sends
            keepalive=30.0,
        )

    def prepare(self) -> None:
        """Make now what the first request would otherwise wait for: the TLS context, when
        an upstream is ``https`` (the proxy calls this once it serves, not before: a worker's
        ``/health`` does not wait for it either)."""
        assert self._pool is not None, "Upstream.start() was not awaited"
        urls = (getattr(self._config, f.name) for f in dataclasses.fields(self._config) if f.name.endswith("_api_url"))
        if any(str(url).lower().startswith("https://") for url in urls):
            self._pool.tls()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def open(self, req: UpstreamRequest) -> http1.Response:
        """Send the request and return the response once its headers have arrived.

        The caller must ``release()`` (or ``close()``) the response. Connection failures
        become :class:`UpstreamError` so routes can answer in the provider's own shape.
        """
        assert self._pool is not None, "Upstream.start() was not awaited"
        try:
            return await self._pool.request(req.method, req.url, req.headers, req.body)
        except TimeoutError:
            raise UpstreamError(504, "upstream did not answer in time") from None
        except http1.Unreachable as exc:
            raise UpstreamError(502, f"upstream unreachable: {exc}") from None
        except http1.ConnectionBroken as exc:
            raise UpstreamError(502, f"upstream connection failed: {exc}") from None
        except ValueError as exc:  # an upstream URL the configuration's checks did not see (made in code)
            raise UpstreamError(502, f"upstream request not sent: {exc}") from None
