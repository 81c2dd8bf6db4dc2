"""Highly available Redis through Sentinel, with real processes: a primary, one replica and
three sentinels (quorum 2). Killing the primary (``kill -9``) must move the store, and a
real two-worker proxy under sustained traffic, to the promoted replica: no request fails
(fail-open while it moves), and limits and the response cache work again afterwards."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from redis import Redis
from redis.exceptions import RedisError

from headroom.state.redis_store import RedisStore
from headroom.state.store import GuardRequest, StoreUnavailable
from testkit import services
from testkit.ports import free_port
from testkit.services import REDIS_BIN
from testkit.waiting import async_wait_for, wait_for

pytestmark = pytest.mark.usefixtures("redis_server")  # skipped (or failed in CI) without redis-server

SERVICE = "hr-primary"


class SentinelSet:
    """A primary, a replica and three sentinels on 127.0.0.1, each a real process.

    The sentinels start knowing each other and the replica (``known-sentinel``,
    ``known-replica``), so nothing waits for their discovery (hello messages every 2 s)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hr-test-sentinel-", dir="/tmp"))
        self.procs: dict[int, subprocess.Popen] = {}
        self.primary_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]

    @property
    def url(self) -> str:
        return f"redis+sentinel://{','.join(f'127.0.0.1:{p}' for p in self.sentinel_ports)}/{SERVICE}/0"

    def _spawn(self, port: int, *args: str) -> None:
        with open(self.dir / f"{port}.log", "w") as log:
            self.procs[port] = subprocess.Popen([REDIS_BIN, *args], stdout=log, stderr=subprocess.STDOUT,
                                                cwd=self.dir)

    def _data_node(self, port: int, *extra: str) -> None:
        self._spawn(port, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--repl-diskless-sync-delay", "0", "--dir", str(self.dir), *extra)

    def client(self, port: int) -> Redis:
        return Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)

    def _answers(self, port: int) -> bool:
        try:
            with self.client(port) as client:
                return bool(client.ping())
        except (RedisError, OSError):
            return False

    def start(self) -> None:
        self._data_node(self.primary_port)
        self._data_node(self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
        for port in (self.primary_port, self.replica_port):
            wait_for(lambda port=port: self._answers(port), timeout=5, what=f"redis-server on {port}")
        with self.client(self.replica_port) as replica:
            wait_for(lambda: replica.info("replication")["master_link_status"] == "up", timeout=5,
                     what="the replica in sync")
        ids = [f"{i + 1:040x}" for i in range(3)]
        for port, myid in zip(self.sentinel_ports, ids):
            others = [f"sentinel known-sentinel {SERVICE} 127.0.0.1 {p} {i}"
                      for p, i in zip(self.sentinel_ports, ids) if p != port]
            conf = self.dir / f"sentinel-{port}.conf"  # sentinel rewrites its own file: one each
            conf.write_text("\n".join([
                f"port {port}", "bind 127.0.0.1", f"dir {self.dir}", f"sentinel myid {myid}",
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} 2",
                f"sentinel down-after-milliseconds {SERVICE} 1000",
                f"sentinel failover-timeout {SERVICE} 4000",
                f"sentinel parallel-syncs {SERVICE} 1",
                f"sentinel known-replica {SERVICE} 127.0.0.1 {self.replica_port}",
                *others, ""]))
            self._spawn(port, str(conf), "--sentinel")
        for port in self.sentinel_ports:
            wait_for(lambda port=port: self._answers(port), timeout=5, what=f"sentinel on {port}")
            with self.client(port) as sentinel:
                wait_for(lambda s=sentinel: s.sentinel_master(SERVICE)["num-other-sentinels"] == 2
                         and s.sentinel_master(SERVICE)["num-slaves"] == 1, timeout=5,
                         what="each sentinel knowing the others and the replica")

    def primary_named(self) -> set[int]:
        """The primary's port as each live sentinel names it now."""
        ports = set()
        for port in self.sentinel_ports:
            with self.client(port) as sentinel:
                ports.add(int(sentinel.sentinel_get_master_addr_by_name(SERVICE)[1]))
        return ports

    def kill(self, port: int) -> None:
        """``kill -9``, as a crash would."""
        self.procs[port].send_signal(signal.SIGKILL)
        self.procs[port].wait()

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in sorted(self.dir.glob("*.log")))

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def sentinels():
    cluster = SentinelSet()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


async def test_the_store_follows_a_failover_to_the_promoted_replica(sentinels):
    store = RedisStore(sentinels.url, retry_interval=1.0)  # the proxy's settings: 1 s between probes
    caller = GuardRequest("sentinel-caller", rpm=1000)
    try:
        assert (await store.guard(caller)).requests_remaining == 999
        assert store._client.primary == ("127.0.0.1", sentinels.primary_port)
        await store.set("hr:test:_all:before", b"replicated")
        with sentinels.client(sentinels.replica_port) as replica:  # the replica has caught up
            wait_for(lambda: replica.get("hr:test:_all:before") == b"replicated", timeout=5, what="replication")

        killed = time.monotonic()
        sentinels.kill(sentinels.primary_port)
        failures = 0

        async def guarded():  # what a steady trickle of requests would see: fail fast, then the new primary
            nonlocal failures
            try:
                return await store.guard(caller)
            except StoreUnavailable:
                failures += 1
                return None

        try:
            result = await async_wait_for(guarded, timeout=20, interval=0.05, what="a guard on the new primary")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{sentinels.logs()}") from None
        moved = time.monotonic() - killed
        print(f"\nfailover (store): primary killed -> first guarded write on the new primary in {moved:.2f}s "
              f"({failures} calls failed fast meanwhile)")
        assert result.allowed
        assert store._client.primary == ("127.0.0.1", sentinels.replica_port)
        assert sentinels.primary_named() == {sentinels.replica_port}
        assert store.healthy and store.health.outages == 1
        assert await store.get("hr:test:_all:before") == b"replicated"
        await store.set("hr:test:_all:after", b"on the new primary")
        with sentinels.client(sentinels.replica_port) as new_primary:
            assert new_primary.get("hr:test:_all:after") == b"on the new primary"
    finally:
        await store.close()


async def _write_until_it_lands(store: RedisStore, key: str, value: bytes, within: float) -> int:
    """Write ``key`` until a write succeeds; how many failed first."""
    failures = 0

    async def landed() -> bool:
        nonlocal failures
        try:
            await store.set(key, value)
            return True
        except StoreUnavailable:
            failures += 1
            return False

    await async_wait_for(landed, timeout=within, interval=0.05, what=f"a write of {key}")
    return failures


async def test_a_switch_master_announcement_moves_the_connection_without_an_outage(sentinels):
    """``SENTINEL FAILOVER`` leaves the old primary running, and still a primary for up to
    10 s: our connection to it does not break. The ``+switch-master`` message retires it,
    and the next call asks the sentinels again: no call fails."""
    store = RedisStore(sentinels.url)
    try:
        await store.set("hr:test:_all:k", b"1")
        watch = store._client.switch_watch

        async def subscribed() -> bool:
            return watch.subscribed

        await async_wait_for(subscribed, timeout=5, interval=0.01, what="the +switch-master subscription")
        with sentinels.client(sentinels.sentinel_ports[0]) as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
        started = time.monotonic()

        async def moved() -> bool:
            await store.set("hr:test:_all:k", b"2")  # raises on any failure
            return store._client.primary == ("127.0.0.1", sentinels.replica_port)

        try:
            await async_wait_for(moved, timeout=10, what="writes reaching the new primary")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{sentinels.logs()}") from None
        print(f"\nSENTINEL FAILOVER: writes on the new primary {time.monotonic() - started:.2f}s later, none failed")
        with sentinels.client(sentinels.replica_port) as new_primary:
            assert new_primary.get("hr:test:_all:k") == b"2"
            assert new_primary.info("replication")["role"] == "master"
        assert store.healthy and store.health.outages == 0 and store.health.failed_ops == 0
        assert store._client.connects == 2
    finally:
        await store.close()


async def test_a_readonly_reply_from_a_demoted_primary_makes_it_ask_the_sentinels_again(sentinels, monkeypatch):
    """Without the announcement (missed, or its sentinel unreachable), the demoted primary's
    first READONLY reply drops the connection; the next call asks the sentinels again, and
    ROLE keeps it off any replica."""
    from headroom.state.sentinel import SwitchWatch

    monkeypatch.setattr(SwitchWatch, "watch", lambda self, index: None)
    store = RedisStore(sentinels.url, retry_interval=0.2)
    try:
        await store.set("hr:test:_all:k", b"1")
        assert store._client.primary == ("127.0.0.1", sentinels.primary_port)
        with sentinels.client(sentinels.sentinel_ports[0]) as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
        wait_for(lambda: sentinels.primary_named() == {sentinels.replica_port}, timeout=10, what="the switch")
        with sentinels.client(sentinels.primary_port) as old:  # what the sentinels do when they next look
            old.execute_command("REPLICAOF", "127.0.0.1", str(sentinels.replica_port))
        assert await _write_until_it_lands(store, "hr:test:_all:k", b"2", within=10) >= 1
        # One call met READONLY; the others failed fast until the probe 0.2 s later, which found the new primary.
        assert store.health.failed_ops == 1
        assert store._client.primary == ("127.0.0.1", sentinels.replica_port)
        assert store._client.connects == 2 and store.health.outages == 1
        with sentinels.client(sentinels.replica_port) as new_primary:
            assert new_primary.get("hr:test:_all:k") == b"2"
    finally:
        await store.close()


async def test_no_sentinel_answering_is_an_outage_not_an_error():
    dead = [free_port(), free_port()]
    store = RedisStore(f"redis+sentinel://127.0.0.1:{dead[0]},127.0.0.1:{dead[1]}/{SERVICE}", retry_interval=5)
    try:
        with pytest.raises(StoreUnavailable, match="no primary for 'hr-primary' found through the sentinels"):
            await store.get("hr:test:_all:x")
        assert store.health.outages == 1 and not store.healthy
    finally:
        await store.close()


ANTHROPIC_VERSION = {"anthropic-version": "2023-06-01"}


def _body(text: str) -> dict:
    return {"model": "claude-sonnet-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": text}]}


def _post(client: httpx.Client, url: str, key: str, text: str) -> httpx.Response:
    return client.post(f"{url}/v1/messages", json=_body(text), headers={"x-api-key": key, **ANTHROPIC_VERSION})


def test_a_proxy_fleet_rides_through_a_failover(sentinels, mock):
    """Two workers, sustained traffic, the primary killed mid-way: every request answers
    200 (unguarded while Redis moves), then rate limits and the cache work on the new primary."""
    log = Path(sentinels.dir) / "proxy.log"
    proxy = services.start_proxy(log, mock.url, "--workers", "2", "--redis-url", sentinels.url, "--rpm", "5")
    try:
        # Traffic: every request has its own API key (its own bucket), so --rpm 5 refuses none.
        statuses: list[int | str] = []
        lock, stop = threading.Lock(), threading.Event()
        counter = iter(range(10**9))

        def sender() -> None:
            # No keep-alive: each request is a new connection, which either worker may accept.
            with httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as client:
                while not stop.is_set():
                    with lock:
                        n = next(counter)
                    try:
                        status: int | str = _post(client, proxy.url, f"sk-ant-flow-{n}", f"flow {n}").status_code
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    with lock:
                        statuses.append(status)

        def first_guarded_write(since: float) -> float:
            """When the new primary took its first write (each request's fresh key adds a
            bucket): seconds after ``since``, polled every 20 ms (a measurement for the report,
            bounded by ``stop``, not a wait: no wait_for)."""
            with sentinels.client(sentinels.replica_port) as new_primary:
                replicated = new_primary.dbsize()
                while not stop.is_set():
                    if new_primary.info("replication")["role"] == "master" and new_primary.dbsize() > replicated:
                        return time.monotonic() - since
                    time.sleep(0.02)
            return float("nan")

        started = time.monotonic()
        with ThreadPoolExecutor(7) as pool:
            workers = [pool.submit(sender) for _ in range(6)]
            time.sleep(2.5)  # kept: steady traffic before the kill is the scenario under test
            before_kill = len(statuses)
            killed = time.monotonic()
            sentinels.kill(sentinels.primary_port)
            moved = pool.submit(first_guarded_write, killed)
            stop.wait(7.5)  # the move takes a few seconds: keep sending through all of it
            stop.set()
            for worker in workers:
                worker.result()
        elapsed = time.monotonic() - started
        failed = [s for s in statuses if s != 200]
        print(f"\nfailover (proxy): {len(statuses)} requests in {elapsed:.1f}s "
              f"({before_kill} before the kill, {len(statuses) - before_kill} after), {len(failed)} failed; "
              f"first guarded write on the new primary {moved.result():.2f}s after the kill")
        assert moved.result() < 7.5, sentinels.logs()
        assert len(statuses) > 100 and len(statuses) - before_kill > 50
        assert not failed, (failed[:10], proxy.output()[-3000:])

        # Both workers reconnect by themselves; then limits and the cache hold again.
        # Several fresh keys: each answer may come from either worker, so poll until one refuses.
        attempts = iter(range(10**6))

        def limited() -> bool:
            key = f"sk-ant-after-{next(attempts)}"
            with httpx.Client(timeout=10) as client:
                return any(_post(client, proxy.url, key, f"limit {i}").status_code == 429 for i in range(8))

        wait_for(limited, timeout=15, interval=0.1, what="--rpm 5 enforced again")
        key = "sk-ant-cache-after"
        with httpx.Client(timeout=10) as client:
            first = _post(client, proxy.url, key, "cache me after the failover")
            assert first.status_code == 200 and first.headers["x-headroom-cache"] == "miss"
            hit = wait_for(lambda: _post(client, proxy.url, key, "cache me after the failover")
                           .headers["x-headroom-cache"] == "hit", timeout=5, interval=0.05, what="a cache hit")
            assert hit
        with sentinels.client(sentinels.replica_port) as new_primary:  # the old one is dead: both came from here
            assert new_primary.info("replication")["role"] == "master"
        assert "is unavailable" in proxy.output()  # the outage was noticed (and logged), not hidden
    finally:
        services.stop(proxy.proc)


@pytest.fixture
def tls_sentinel(tmp_path):
    """A TLS-only primary and a TLS-only sentinel (quorum 1), certificate for 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    tls = ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
           "--tls-auth-clients", "no"]
    primary, sentinel = free_port(), free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 1\n")
    procs = [subprocess.Popen([REDIS_BIN, "--port", "0", "--tls-port", str(primary), "--bind", "127.0.0.1", *tls,
                               "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    procs.append(subprocess.Popen([REDIS_BIN, str(conf), "--sentinel", "--port", "0", "--tls-port", str(sentinel),
                                   "--bind", "127.0.0.1", "--tls-replication", "yes", *tls, "--dir", str(tmp_path)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        for port in (primary, sentinel):
            def up(port=port) -> bool:
                if any(proc.poll() is not None for proc in procs):
                    pytest.skip("this redis-server was built without TLS")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    return True
                except OSError:
                    return False
            wait_for(up, timeout=5, what=f"TLS redis on {port}")
        yield f"rediss+sentinel://127.0.0.1:{sentinel}/{SERVICE}/0?ssl_ca_certs={cert}", primary
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


async def test_sentinel_over_tls(tls_sentinel):
    url, primary = tls_sentinel
    store = RedisStore(url)
    try:
        assert (await store.guard(GuardRequest("tls-sentinel", rpm=10))).requests_remaining == 9
        assert store._client.primary == ("127.0.0.1", primary)
        async def subscribed() -> bool:  # the +switch-master watch speaks TLS too
            return store._client.switch_watch.subscribed

        await async_wait_for(subscribed, timeout=5, interval=0.01, what="the +switch-master subscription over TLS")
    finally:
        await store.close()
    untrusted = RedisStore(url.split("?")[0])  # a self-signed certificate, and no CA given
    try:
        with pytest.raises(StoreUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.get("hr:test:_all:x")
    finally:
        await untrusted.close()
