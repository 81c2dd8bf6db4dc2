"""A real Prometheus scrapes two local servers, and its HTTP API shows what it ingested.

One server serves fixed text (checks the harness itself); the other serves
:func:`headroom.observability.metrics.render` over a directory that two spawned workers
filled, which checks that the actual exposition format and content type are accepted.
Both demand a bearer token, as the proxy's ``/metrics`` may.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from headroom.observability import metrics
from testkit.prometheus import Prometheus, start_prometheus
from tests.observability import workers

TOKEN = "scrape-token-123"
STATIC = (
    b"# HELP harness_static_total A fixed value.\n"
    b"# TYPE harness_static_total counter\n"
    b'harness_static_total{kind="fixed"} 42\n'
)


def serve(body: Callable[[], tuple[bytes, str]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics" or self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.send_error(401 if self.path == "/metrics" else 404)
                return
            payload, content_type = body()
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def address(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"{host}:{port}"


@pytest.fixture(scope="module")
def scraped(prometheus_binary, tmp_path_factory) -> Iterator[tuple[Prometheus, str, str]]:
    tmp = tmp_path_factory.mktemp("harness")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(metrics.ENV_VAR, raising=False)
        metrics.prepare_multiprocess_dir(str(tmp / "metrics"))
        context = multiprocessing.get_context("spawn")
        processes = [context.Process(target=workers.observe_many, args=(n,)) for n in (15, 25)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(30)
            assert process.exitcode == 0

        static = serve(lambda: (STATIC, "text/plain; version=0.0.4; charset=utf-8"))
        live = serve(metrics.render)
        prometheus = start_prometheus([address(static), address(live)], tmp, bearer_token=TOKEN,
                                      binary=prometheus_binary)
        try:
            yield prometheus, address(static), address(live)
        finally:
            prometheus.stop()
            for server in (static, live):
                server.shutdown()
                server.server_close()
    metrics.sync_value_class()


def test_prometheus_ingests_a_static_value(scraped):
    prometheus, static, _ = scraped
    assert prometheus.wait_for_value(f'harness_static_total{{instance="{static}",kind="fixed"}}', 42) == 42


def test_prometheus_ingests_headroom_metrics_summed_over_workers(scraped):
    prometheus, _, live = scraped
    selector = f'{{instance="{live}"}}'
    assert prometheus.wait_for_value(f"sum(headroom_requests_total{selector})", 40) == 40
    assert prometheus.value(f"sum(headroom_latency_ms_sum{selector})") == 40 * 120.0
    assert prometheus.value(f"sum(headroom_tokens_saved_total{selector})") == 40 * 400
    up = prometheus.query(f"up{selector}")
    assert up[0]["value"][1] == "1"
