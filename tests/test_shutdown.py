"""Graceful shutdown of the real ``headroom proxy`` (SIGTERM, as Docker and Kubernetes send it):
stop accepting, let in-flight streams finish within ``--shutdown-grace``, flush the books,
stop the private Redis, exit 0 — and never hang, even when stopped just as it starts.

The same when the signal goes to the whole process group (systemd's ``KillMode=control-group``,
a shared-PID container, Ctrl-C in a terminal), and no process outlives a proxy killed with
SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from testkit import ROOT, processes
from testkit.ports import free_port
from testkit.services import proxy_command, wait_until_ready
from testkit.waiting import wait_for


class Launched:
    def __init__(self, upstream: str, log: Path, *flags: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(proxy_command(self.port, upstream, *flags), stdout=out,
                                         stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                         env={**os.environ, **(env or {})})

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def signal_group(self, sig: int) -> None:
        """As systemd, a container runtime or a terminal does: every process in the group."""
        os.killpg(self.proc.pid, sig)

    def cleanup(self) -> None:
        if processes.find(group=self.proc.pid):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_stop_just_after_start_exits_promptly_and_leaves_nothing_running(mock, tmp_path, workers):
    # SIGTERM within milliseconds of the first 200 on /health once made the main process spin
    # forever (a Sanic worker still starting ignores the signal; its manager then waits for it).
    for attempt in range(4):
        proxy = Launched(mock.url, tmp_path / f"proxy-{attempt}.log", "--workers", workers)
        try:
            wait_until_ready(f"{proxy.url}/health", proxy.proc, proxy.log, timeout=60)
            time.sleep(attempt * 0.03)
            proxy.terminate()
            # Well under 10 s: Sanic's last step waited that long for a worker that had exited
            # on its own (its state not final) before Watchdog marks such workers COMPLETED.
            assert proxy.proc.wait(timeout=9) == 0, proxy.log.read_text()[-2000:]
            wait_for(lambda p=proxy: not processes.find(group=p.proc.pid), timeout=10, what="every child to exit")
        finally:
            proxy.cleanup()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_stop_before_the_proxy_serves_is_a_clean_stop(mock, tmp_path, workers):
    # SIGTERM while the proxy still imports, starts its helpers or its server (a rollout
    # undone at once, a supervisor giving up): exit 0, every helper stopped, no traceback.
    # It was the default action in that window: exit -15, and the private Redis left to
    # notice its parent was gone. (Not in the interpreter's own start, about 40 ms here with
    # site's imports, before any of Headroom's code runs: no Python program can handle a
    # signal there. ``python -m headroom proxy`` notes stops from its first line, before
    # headroom.cli's imports: 0.1 s in used to land before that on a slow machine.)
    for attempt, delay in enumerate((0.1, 0.2, 0.3, 0.45)):
        proxy = Launched(mock.url, tmp_path / f"proxy-{attempt}.log", "--workers", workers)
        try:
            time.sleep(delay)
            proxy.terminate()
            assert proxy.proc.wait(timeout=20) == 0, proxy.log.read_text()[-2000:]
            assert "Traceback" not in proxy.log.read_text()
            wait_for(lambda p=proxy: not processes.find(group=p.proc.pid), timeout=10, what="every child to exit")
        finally:
            proxy.cleanup()


def _slow_stream(url: str, result: dict, started: threading.Event, tokens_per_s: int = 15) -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 512, "stream": True,
            "messages": [{"role": "user", "content": "a long answer please"}]}
    headers = {"x-api-key": "sk-ant-shutdown", "anthropic-version": "2023-06-01", "x-mock-events": "60",
               "x-mock-ttft-ms": "200", "x-mock-tokens-per-s": str(tokens_per_s)}
    events = []
    try:
        with httpx.stream("POST", f"{url}/v1/messages", json=body, headers=headers, timeout=60) as response:
            result["status"] = response.status_code
            for line in response.iter_lines():
                if line.startswith("event: "):
                    events.append(line[len("event: "):])
                    started.set()
    except httpx.HTTPError as exc:
        result["error"] = repr(exc)
    finally:
        result["events"] = events
        started.set()


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


def test_sigterm_lets_a_long_stream_finish_flushes_the_books_and_stops_the_private_redis(mock, tmp_path):
    log_file = tmp_path / "requests.jsonl"
    proxy = Launched(mock.url, tmp_path / "proxy.log", "--workers", "2", "--log-file", str(log_file),
                     "--shutdown-grace", "30")
    try:
        wait_until_ready(f"{proxy.url}/health", proxy.proc, proxy.log, timeout=60)
        # Both workers serving before the stream starts: a stop that reaches a worker still
        # starting is another case (test_a_stop_while_the_second_worker_starts...), not this one.
        wait_for(lambda: len(processes.live_workers(proxy.log.read_text())) == 2, timeout=30, what="both workers")
        redis_pids = processes.find(parent=proxy.proc.pid, cmdline=b"redis-server")
        assert len(redis_pids) == 1  # the private Redis the two workers share

        result: dict = {}
        started = threading.Event()
        client = threading.Thread(target=_slow_stream, args=(proxy.url, result, started))
        client.start()
        assert started.wait(20) and "events" not in result  # the stream is under way
        began = time.monotonic()
        proxy.terminate()
        wait_for(lambda: _refused(proxy.port), timeout=5, what="new connections to be refused")
        client.join(60)
        took = time.monotonic() - began
        assert result.get("status") == 200 and "error" not in result, result
        assert result["events"][-1] == "message_stop", result["events"][-5:]  # complete, not cut
        assert took > 1.0  # it really was in flight when the signal came
        assert proxy.proc.wait(timeout=30) == 0, proxy.log.read_text()[-3000:]
        wait_for(lambda: not processes.find(group=proxy.proc.pid), timeout=10, what="every child to exit")
        assert not Path(f"/proc/{redis_pids[0]}").exists() or b"redis" not in Path(
            f"/proc/{redis_pids[0]}/cmdline").read_bytes()
        lines = [json.loads(line) for line in log_file.read_text().splitlines()]
        assert [(line["path"], line["status"], line["stream"]) for line in lines] == [("/v1/messages", 200, True)]
        assert lines[0]["output_tokens"] > 0
    finally:
        proxy.cleanup()


def test_a_stream_longer_than_the_grace_is_cut_and_the_proxy_still_exits_cleanly(mock, tmp_path):
    proxy = Launched(mock.url, tmp_path / "proxy.log", "--shutdown-grace", "1")
    try:
        wait_until_ready(f"{proxy.url}/health", proxy.proc, proxy.log, timeout=60)
        result: dict = {}
        started = threading.Event()
        client = threading.Thread(target=_slow_stream, args=(proxy.url, result, started, 3))
        client.start()
        assert started.wait(20)
        began = time.monotonic()
        proxy.terminate()
        assert proxy.proc.wait(timeout=20) == 0, proxy.log.read_text()[-3000:]
        assert time.monotonic() - began < 8  # the grace (1 s) and Sanic's own bookkeeping, not the stream
        client.join(30)
        assert result["events"] and result["events"][-1] != "message_stop"
    finally:
        proxy.cleanup()


def _stream_in_flight(url: str, result: dict, answered: threading.Event, events: int, gap_ms: int) -> None:
    """One Anthropic stream of ``events`` text deltas, ``gap_ms`` apart (the mock's pace);
    ``answered`` is set once the status line is in: the stream is then in a worker's hands."""
    body = {"model": "claude-sonnet-4-5", "max_tokens": 512, "stream": True,
            "messages": [{"role": "user", "content": "a long answer please"}]}
    headers = {"x-api-key": "sk-ant-shutdown", "anthropic-version": "2023-06-01", "x-mock-events": str(events),
               "x-mock-ttft-ms": "0", "x-mock-stream-delay-ms": str(gap_ms)}
    seen: list[str] = []
    try:
        with httpx.stream("POST", f"{url}/v1/messages", json=body, headers=headers, timeout=60) as response:
            result["status"] = response.status_code
            answered.set()
            for line in response.iter_lines():
                if line.startswith("event: "):
                    seen.append(line[len("event: "):])
    except httpx.HTTPError as exc:
        result["error"] = repr(exc)
    finally:
        result["events"] = seen
        answered.set()


def _worker_pid(main_pid: int, name: str) -> int | None:
    """The pid of the HTTP worker Sanic calls ``name`` (it is in the worker's environment from
    its first instruction on, before any import), or None while it does not exist yet."""
    for pid in processes.find(parent=main_pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"SANIC_WORKER_NAME={name}".encode() in environ:
            return pid
    return None


def _launch_with_the_second_worker_held(mock, tmp_path: Path, grace: int) -> tuple[Launched, int]:
    """``headroom proxy --workers 2`` whose second worker is frozen (SIGSTOP) in the middle
    of its start — its app built, its start-up hooks (opening Redis, importing its client)
    under way — while the first serves: a slow start, made certain instead of left to the
    scheduler. Returns the proxy, its first worker serving, and the held worker's pid."""
    for attempt in range(3):
        # Spawned: a forked worker is through its start in milliseconds, too quick to catch.
        proxy = Launched(mock.url, tmp_path / f"proxy-{attempt}.log", "--workers", "2",
                         "--shutdown-grace", str(grace), env={"HEADROOM_WORKER_START": "spawn"})
        try:
            held = wait_for(lambda p=proxy: p.proc.poll() is None and _worker_pid(p.proc.pid, "Sanic-Server-1-0"),
                            timeout=30, interval=0.005, what="the second worker to exist")
            wait_for(lambda p=proxy, h=held: p.proc.poll() is not None or f"Starting worker [{h}]" in p.log.read_text(),
                     timeout=60, interval=0.002, what="the second worker to start its app")
            os.kill(held, signal.SIGSTOP)
            if f"Worker ready [{held}]" not in proxy.log.read_text():
                wait_until_ready(f"{proxy.url}/health", proxy.proc, proxy.log, timeout=60)
                assert held not in processes.live_workers(proxy.log.read_text())  # still starting
                return proxy, held
            os.kill(held, signal.SIGCONT)  # too quick to catch mid-start: once more
        except BaseException:
            proxy.cleanup()
            raise
        proxy.proc.terminate()
        proxy.cleanup()
    pytest.fail("the second worker was never caught in the middle of its start")


def test_a_stop_while_the_second_worker_starts_lets_the_first_workers_stream_finish(mock, tmp_path):
    # Once seen within ~0.1 s of the first worker serving, the second still starting: the
    # stop's SIGINT hit the starting worker in an import (KeyboardInterrupt), and the serving
    # worker, stopped twice, died in its drain; Sanic's manager took that for a failed start
    # and SIGKILLed the lot — the stream cut, the proxy killed instead of exiting 0.
    grace = 20
    proxy, held = _launch_with_the_second_worker_held(mock, tmp_path, grace)
    serving = held  # until known
    try:
        result: dict = {}
        answered = threading.Event()
        client = threading.Thread(target=_stream_in_flight, args=(proxy.url, result, answered, 40, 50))
        client.start()
        assert answered.wait(20) and result.get("status") == 200, result
        [serving] = processes.live_workers(proxy.log.read_text())
        # As on a busy host, the serving worker gets no CPU for a moment as the stop comes:
        # its stop signal and its TERMINATED mark are both in when it runs again.
        os.kill(serving, signal.SIGSTOP)
        began = time.monotonic()
        proxy.terminate()
        wait_for(lambda: "Received signal SIGTERM" in proxy.log.read_text(), timeout=5, what="the stop")
        time.sleep(0.3)
        os.kill(serving, signal.SIGCONT)
        os.kill(held, signal.SIGCONT)  # and the held worker goes on with its start
        client.join(grace + 10)
        assert not client.is_alive(), proxy.log.read_text()[-3000:]
        assert "error" not in result, (result, proxy.log.read_text()[-3000:])
        assert result["events"][-1] == "message_stop", result["events"][-5:]  # complete, not cut
        assert result["events"].count("content_block_delta") == 40, result["events"]
        assert time.monotonic() - began > 1.0  # it really was in flight when the signal came
        assert proxy.proc.wait(timeout=grace + 10) == 0, proxy.log.read_text()[-3000:]
        assert time.monotonic() - began < grace
        output = proxy.log.read_text()
        assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
        wait_for(lambda: not processes.find(group=proxy.proc.pid), timeout=10, what="every child to exit")
    finally:
        for pid in (held, serving):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        proxy.cleanup()


def test_a_worker_stuck_starting_does_not_hold_the_stop_past_the_grace(mock, tmp_path):
    # The held worker never goes on: it cannot stop itself, and must not keep the proxy up.
    grace = 2
    proxy, held = _launch_with_the_second_worker_held(mock, tmp_path, grace)
    try:
        began = time.monotonic()
        proxy.terminate()
        assert proxy.proc.wait(timeout=grace + 20) == 0, proxy.log.read_text()[-3000:]
        assert time.monotonic() - began < grace + 5, proxy.log.read_text()[-3000:]
        wait_for(lambda: not processes.alive(held), timeout=5, what="the stuck worker to be gone")
        wait_for(lambda: not processes.find(group=proxy.proc.pid), timeout=10, what="every child to exit")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(held, signal.SIGCONT)
        proxy.cleanup()


def _family(main_pid: int) -> dict[int, bytes]:
    """The proxy's processes (its own, and its helpers in sessions of their own) by command line."""
    family = {}
    for pid in processes.descendants(main_pid):
        with contextlib.suppress(OSError):
            family[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    return family


def _helpers(family: dict[int, bytes]) -> list[int]:
    return [pid for pid, cmdline in family.items() if b"redis-server" in cmdline or b"model-server" in cmdline]


def _launch_serving(mock, log: Path, workers: int, *flags: str) -> Launched:
    proxy = Launched(mock.url, log, "--workers", str(workers), *flags)
    try:
        wait_until_ready(f"{proxy.url}/health", proxy.proc, proxy.log, timeout=90)
        wait_for(lambda: len(processes.live_workers(proxy.log.read_text())) == workers, timeout=90,
                 what="every worker serving")
    except BaseException:
        proxy.cleanup()
        raise
    return proxy


def _survivors(family: dict[int, bytes]) -> dict[int, bytes]:
    return {pid: cmdline for pid, cmdline in family.items() if processes.alive(pid)}


def _wait_all_gone(family: dict[int, bytes], timeout: float) -> None:
    try:
        wait_for(lambda: not _survivors(family), timeout=timeout, what="every process of the proxy to exit")
    except AssertionError:
        raise AssertionError(f"still running after {timeout:g}s: {_survivors(family)}") from None


GROUP_CASES = [  # Ctrl-C in a terminal is SIGINT to the foreground group
    pytest.param(1, (), signal.SIGTERM, id="1-worker-SIGTERM"),
    pytest.param(4, (), signal.SIGTERM, id="4-workers-private-redis-SIGTERM"),
    pytest.param(4, (), signal.SIGINT, id="4-workers-private-redis-SIGINT"),
    pytest.param(1, ("--llmlingua",), signal.SIGTERM, id="llmlingua-model-server-SIGTERM"),
]


@pytest.mark.parametrize(("workers", "flags", "sig"), GROUP_CASES)
def test_a_stop_of_the_whole_process_group_is_as_clean_as_a_stop_of_the_main_process(
        request, mock, tmp_path, workers, flags, sig):
    # SIGTERM to the group once killed Sanic's shared-state manager first: the main process
    # printed three tracebacks (ConnectionResetError, ForkAwareLocal, _sync_states) and exit 1.
    if flags:
        flags = (*flags, "--llmlingua-model", str(request.getfixturevalue("lingua_model")))
    proxy = _launch_serving(mock, tmp_path / "proxy.log", workers, "--shutdown-grace", "30", *flags)
    try:
        family = _family(proxy.proc.pid)
        helpers = _helpers(family)
        assert len(helpers) == (workers > 1) + bool(flags), family  # the private Redis, the model server
        result: dict = {}
        started = threading.Event()
        client = threading.Thread(target=_slow_stream, args=(proxy.url, result, started))
        client.start()
        assert started.wait(20) and "events" not in result  # the stream is under way
        proxy.signal_group(sig)
        wait_for(lambda: _refused(proxy.port), timeout=10, what="new connections to be refused")
        if client.is_alive():  # still draining: the helpers it may need are still there
            assert all(processes.alive(pid) for pid in helpers), _family(proxy.proc.pid)
        client.join(60)
        assert result.get("status") == 200 and "error" not in result, result
        assert result["events"][-1] == "message_stop", result["events"][-5:]  # complete, not cut
        assert proxy.proc.wait(timeout=40) == 0, proxy.log.read_text()[-3000:]
        output = proxy.log.read_text()
        assert "Traceback" not in output and "Exception" not in output, output[-3000:]
        _wait_all_gone(family, timeout=10)
    finally:
        proxy.cleanup()


KILL_CASES = [pytest.param(1, (), id="1-worker"), pytest.param(4, (), id="4-workers-private-redis"),
              pytest.param(1, ("--llmlingua",), id="llmlingua-model-server")]


@pytest.mark.parametrize(("workers", "flags"), KILL_CASES)
def test_no_process_outlives_a_proxy_killed_with_sigkill(request, mock, tmp_path, workers, flags):
    # Sanic's manager process (and the workers, holding the port) once lived on for good.
    if flags:
        flags = (*flags, "--llmlingua-model", str(request.getfixturevalue("lingua_model")))
    proxy = _launch_serving(mock, tmp_path / "proxy.log", workers, *flags)
    family: dict[int, bytes] = {}
    try:
        family = _family(proxy.proc.pid)
        # One worker: the main process serves alone. More: the main process, Sanic's manager
        # and multiprocessing's resource tracker, the workers. And the helpers (which run in
        # sessions of their own).
        own = 1 if workers == 1 else 3 + workers
        assert len(family) >= own + len(_helpers(family)), family
        proxy.proc.kill()
        assert proxy.proc.wait(timeout=10) == -signal.SIGKILL
        _wait_all_gone(family, timeout=5)
        assert _refused(proxy.port)
    finally:
        for pid in _survivors(family):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proxy.cleanup()
