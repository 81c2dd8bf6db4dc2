"""Sanic's HTTP protocol with a deadline on the whole request, not on the silence between bytes,
and a cap on open connections.

Sanic's request timeout restarts with every chunk received, so a client trickling its body
a byte at a time holds a connection and a buffer for as long as it likes. Here a request must
arrive whole within ``--client-timeout`` of its first byte, and a connection that has sent
nothing at all is closed after the same time (not after the longer keep-alive timeout).
Checked against Sanic 24.12 and 25.12 (``_time``, ``_http.stage``, ``check_timeouts``);
tests trickle a body and hold a thousand idle connections.

Connections beyond ``--max-connections`` (per worker) get a 503 with ``retry-after`` at once
and are closed, before anything is read: file descriptors and buffers stay bounded. The body
is both providers' error shape at once (``type``/``error.type`` for Anthropic's SDK,
``error.message``/``error.code`` for OpenAI's), since the route is not known yet.

Each connection's requests are parsed by :class:`headroom.proxy.framing.StrictHttp`
(``HTTP_CLASS``): a head or chunked body a front proxy could frame differently is refused
and the connection closed.
"""

from __future__ import annotations

import json
from time import monotonic

from sanic.exceptions import RequestTimeout
from sanic.http import Stage
from sanic.server.protocols.http_protocol import HttpProtocol

from headroom.proxy.framing import StrictHttp

_LONG_AGO = -1e12  # a last-activity time old enough for any timeout to have expired
_TOO_MANY = json.dumps({"type": "error", "error": {
    "type": "overloaded_error", "code": "too_many_connections",
    "message": "Headroom has too many open connections in this worker (--max-connections): retry shortly"}}).encode()
TOO_MANY_CONNECTIONS = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
                        b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_TOO_MANY), _TOO_MANY))


class DeadlineHttpProtocol(HttpProtocol):
    __slots__ = ("_request_began", "_requests_seen")  # Sanic's protocol has slots: declare ours
    HTTP_CLASS = StrictHttp

    def connection_made(self, transport) -> None:
        self._request_began = monotonic()
        self._requests_seen = 0
        super().connection_made(transport)
        if len(self.connections) > getattr(self.app.config, "HEADROOM_MAX_CONNECTIONS", len(self.connections)):
            transport.write(TOO_MANY_CONNECTIONS)
            self.close()

    def data_received(self, data: bytes) -> None:
        http = getattr(self, "_http", None)
        if http is None or http.stage is Stage.IDLE:
            self._request_began = monotonic()  # the first byte of a new request
            self._requests_seen += 1
        super().data_received(data)

    def check_timeouts(self) -> None:
        http = getattr(self, "_http", None)
        if http is not None and self._task and monotonic() - self._request_began > self.request_timeout:
            if http.stage is Stage.HANDLER and http.request_body:
                # The body is still arriving (Sanic reads it in the handler stage, where only the
                # response timeout applies): answer 408 and close, as Sanic does for headers.
                http.exception = RequestTimeout("Request Timeout")
                self._task.cancel()
                return
            never_sent = http.stage is Stage.IDLE and self._requests_seen == 0
            if http.stage is Stage.REQUEST or never_sent:
                self._time = _LONG_AGO  # the base class now sees the timeout as expired, and acts as usual
        super().check_timeouts()
