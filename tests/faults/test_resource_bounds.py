"""Bounded resources on a real proxy: request bytes held per worker, slow and idle clients."""

from __future__ import annotations

import socket
import threading
import time

import httpx

from testkit.waiting import wait_for

HEADERS = {"x-api-key": "sk-ant-bounds", "anthropic-version": "2023-06-01"}


def _body(size: int) -> dict:
    return {"model": "claude-sonnet-4-5", "max_tokens": 8,
            "messages": [{"role": "user", "content": "x" * size}]}


def test_request_bytes_in_flight_are_bounded_per_worker(start_proxy, fresh_mock):
    proxy = start_proxy("--max-inflight-mb", "1", "--no-optimize", "--no-cache")
    # One request alone is accepted whatever its size (--max-body-mb bounds it).
    assert httpx.post(f"{proxy.url}/v1/messages", json=_body(1_500_000), headers=HEADERS,
                      timeout=30).status_code == 200

    slow: dict = {}

    def held() -> None:  # 600 KB held for about 2 s while the mock "thinks"
        slow["status"] = httpx.post(f"{proxy.url}/v1/messages", json=_body(600_000),
                                    headers={**HEADERS, "x-mock-ttft-ms": "2000"}, timeout=30).status_code

    holder = threading.Thread(target=held)
    holder.start()
    wait_for(lambda: len(fresh_mock.requests()) >= 2, timeout=10, what="the held request upstream")
    refused = httpx.post(f"{proxy.url}/v1/messages", json=_body(600_000), headers=HEADERS, timeout=30)
    small = httpx.post(f"{proxy.url}/v1/messages", json=_body(1_000), headers=HEADERS, timeout=30)
    holder.join(30)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["type"] == "error" and refused.json()["error"]["type"] == "rate_limit_error"
    assert small.status_code == 200  # what still fits goes through
    assert slow["status"] == 200
    # Released when the answer has gone out: the same request now passes.
    assert httpx.post(f"{proxy.url}/v1/messages", json=_body(600_000), headers=HEADERS,
                      timeout=30).status_code == 200


def _closed(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except OSError:
        return True


def test_a_trickled_body_is_cut_after_the_client_timeout_while_others_are_served(start_proxy, fresh_mock):
    proxy = start_proxy("--client-timeout", "2")
    host, port = proxy.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                 b"content-length: 1000\r\nx-api-key: sk-ant-slow\r\n\r\n{")
    began = time.monotonic()
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.3):  # the slowness is the attack: one byte every 0.3 s keeps the body coming
            try:
                sock.sendall(b" ")
            except OSError:
                return

    dripper = threading.Thread(target=trickle, daemon=True)
    dripper.start()
    try:
        fast = httpx.post(f"{proxy.url}/v1/messages", json=_body(10), headers=HEADERS, timeout=10)
        assert fast.status_code == 200 and time.monotonic() - began < 2  # the slow one blocks nobody
        sock.settimeout(8)
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]  # Request Timeout, then the connection ends
        assert 1.5 < time.monotonic() - began < 8
    finally:
        stop.set()
        sock.close()


def test_a_thousand_idle_connections_do_not_tie_up_the_worker_and_are_closed(start_proxy, fresh_mock):
    proxy = start_proxy("--client-timeout", "3")
    host, port = proxy.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(1000)]
    try:
        began = time.monotonic()
        answer = httpx.post(f"{proxy.url}/v1/messages", json=_body(10), headers=HEADERS, timeout=10)
        assert answer.status_code == 200 and time.monotonic() - began < 3
        open_ = list(idle)

        def mostly_closed() -> bool:  # each is closed about --client-timeout after it opened
            open_[:] = [s for s in open_ if not _closed(s, timeout=0.001)]
            return len(open_) <= 10

        wait_for(mostly_closed, timeout=20, interval=0.5, what="all but 10 of the idle connections closed")
    finally:
        for s in idle:
            s.close()
