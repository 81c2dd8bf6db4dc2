"""The pipelined client under the Redis store: replies stay matched to callers whatever
happens around them (concurrency, cancellation, errors, timeouts), and the URL's
credentials, database and TLS settings are honoured."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess

import pytest
from redis import exceptions as rx

from headroom.state.redis_url import Endpoint, redact_url
from headroom.state.resp import RespClient
from testkit.waiting import async_wait_for, wait_for


def test_endpoint_from_url():
    assert Endpoint.from_url("redis://127.0.0.1:7000/4") == Endpoint(host="127.0.0.1", port=7000, db=4)
    assert Endpoint.from_url("redis://h") == Endpoint(host="h")
    assert Endpoint.from_url("redis://alice:p%40ss@h:1/0") == Endpoint(host="h", port=1, username="alice",
                                                                       password="p@ss")
    assert Endpoint.from_url("unix:///run/r.sock?db=3&password=z") == Endpoint(path="/run/r.sock", db=3,
                                                                              password="z")
    tls = Endpoint.from_url("rediss://:pw@cache:6380/1?ssl_cert_reqs=none")
    assert tls.tls and not tls.tls_verify and tls.password == "pw" and tls.username is None
    context = tls.tls_context()
    assert context is not None and not context.check_hostname
    assert Endpoint.from_url("rediss://cache").tls_context().check_hostname
    with pytest.raises(ValueError, match="unsupported Redis URL scheme"):
        Endpoint.from_url("http://h:6379")
    with pytest.raises(ValueError, match=r"invalid Redis URL redis://:\*\*\*@h/x: the database must be a number"):
        Endpoint.from_url("redis://:secret@h/x")
    with pytest.raises(ValueError, match="needs the socket's path"):
        Endpoint.from_url("unix://")


def test_sentinel_urls():
    endpoint = Endpoint.from_url("redis+sentinel://:pw@s1:26380,s2,[::1]:26381/primary/2?sentinel_password=sp")
    assert endpoint.sentinels == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert (endpoint.service, endpoint.db, endpoint.password, endpoint.username) == ("primary", 2, "pw", None)
    assert (endpoint.sentinel_password, endpoint.sentinel_username, endpoint.tls) == ("sp", None, False)
    assert endpoint.sentinel("s1", 26380) == Endpoint(host="s1", port=26380, password="sp")
    assert endpoint.at("10.0.0.5", 6379) == Endpoint(host="10.0.0.5", port=6379, password="pw", db=2)
    tls = Endpoint.from_url("rediss+sentinel://u:p%40w@s1/m?db=3&sentinel_username=su&sentinel_password=x"
                            "&ssl_cert_reqs=none")
    assert (tls.tls, tls.tls_verify, tls.username, tls.password, tls.db) == (True, False, "u", "p@w", 3)
    assert tls.sentinel("s1", 1) == Endpoint(host="s1", port=1, username="su", password="x", tls=True,
                                             tls_verify=False)
    assert Endpoint.from_url("REDIS+SENTINEL://s1/m").sentinels == (("s1", 26379),)
    for url, why in [
        ("redis+sentinel://s1:26379", "the path must be the master name"),
        ("redis+sentinel://s1/m/1/2", "the path must be the master name"),
        ("redis+sentinel:///m", "no sentinel given"),
        ("redis+sentinel://s1,/m", "an address without a host"),
        ("redis+sentinel://s1:0/m", "bad port"),
        ("redis+sentinel://s1:x/m", "bad port"),
        ("redis+sentinel://[::1/m", "malformed address|Invalid IPv6"),
        ("redis+sentinel://s1/m/x", "the database must be a number"),
        ("redis+sentinel://s1/m/1?db=2", "the database is given twice"),
        ("redis+sentinel://s1/m?sentinel_pasword=x", "unknown parameter 'sentinel_pasword'"),
    ]:
        with pytest.raises(ValueError, match=why):
            Endpoint.from_url(url)
    with pytest.raises(ValueError) as refused:  # the message never shows a password
        Endpoint.from_url("redis+sentinel://:hunter2@s1:x/m?sentinel_password=hunter3")
    assert "hunter" not in str(refused.value) and ":***@" in str(refused.value)


def test_redact_url_masks_every_password():
    from headroom.state.redis_store import redact_url as reexported

    assert reexported is redact_url
    assert redact_url("redis+sentinel://:pw@s1:26379,s2:26379/m/0?sentinel_password=sp&db=1") \
        == "redis+sentinel://:***@s1:26379,s2:26379/m/0?sentinel_password=***&db=1"
    assert redact_url("rediss+sentinel://u:pw@s1/m?sentinel_username=su") \
        == "rediss+sentinel://u:***@s1/m?sentinel_username=su"
    assert redact_url("redis+sentinel://s1/m?sentinel_password=sp") == "redis+sentinel://s1/m?sentinel_password=***"
    assert redact_url("unix:///run/r.sock?db=3&password=z") == "unix:///run/r.sock?db=3&password=***"
    assert redact_url("redis://u:pw@h/0") == "redis://u:***@h/0"
    assert redact_url("redis://u@h/0") == "redis://u@h/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    assert redact_url("redis://:pw@[::1/0") == "redis://***"  # unparseable: nothing shown


def test_handshake_commands():
    assert Endpoint().handshake("headroom") == [("CLIENT", "SETNAME", "headroom")]
    assert Endpoint(username="u", password="p", db=2).handshake("") == [("AUTH", "u", "p"), ("SELECT", 2)]
    assert Endpoint(password="p").handshake("") == [("AUTH", "p")]


@pytest.fixture
async def client(redis_server):
    """A client of the session's Redis (skipped, or failed in CI, without redis-server)."""
    client = RespClient(redis_server.url)
    yield client
    await client.close()


async def test_concurrent_callers_get_their_own_replies(client):
    keys = [f"hr:test:resp:{i}" for i in range(200)]
    await client.execute_many([("SET", key, f"value-{i}") for i, key in enumerate(keys)])
    replies = await asyncio.gather(*(client.execute("GET", key) for key in reversed(keys)))
    assert replies == [f"value-{i}".encode() for i in reversed(range(200))]
    assert client.connects == 1
    await client.execute("DEL", *keys)


async def test_a_cancelled_caller_does_not_shift_the_replies(client):
    await client.execute_many([("SET", "hr:test:c:1", "one"), ("SET", "hr:test:c:2", "two")])
    waiting = asyncio.ensure_future(client.execute("GET", "hr:test:c:1"))
    await asyncio.sleep(0)  # kept: one loop turn, so the command is written and its reply not read yet
    waiting.cancel()
    assert await client.execute("GET", "hr:test:c:2") == b"two"
    assert await client.execute("GET", "hr:test:c:1") == b"one"
    assert client.connects == 1


async def test_reply_errors_are_typed_and_keep_the_connection_in_step(client):
    with pytest.raises(rx.NoScriptError):
        await client.execute("EVALSHA", "0" * 40, 0)
    with pytest.raises(rx.ResponseError, match="not an integer"):
        await client.execute_many([("SET", "hr:test:e", "x"), ("INCR", "hr:test:e"), ("GET", "hr:test:e")])
    assert await client.execute("GET", "hr:test:e") == b"x"
    assert await client.transaction([("INCRBY", "hr:test:n", 2), ("PEXPIRE", "hr:test:n", 10_000)]) == [2, 1]
    replies = await client.execute_many([("GET", "hr:test:e"), ("INCR", "hr:test:e")], raise_replies=False)
    assert replies[0] == b"x" and isinstance(replies[1], rx.ResponseError)
    [alone] = await client.execute_many([("INCR", "hr:test:e")], raise_replies=False)
    assert isinstance(alone, rx.ResponseError)
    assert client.connects == 1
    await client.execute("DEL", "hr:test:e", "hr:test:n")


@pytest.mark.usefixtures("redis_server")
async def test_a_hung_redis_times_out_every_waiting_call_then_reconnects(own_redis):
    client = RespClient(own_redis.url, timeout=0.1)
    try:
        assert await client.execute("PING") == b"PONG"
        os.kill(own_redis.pid, signal.SIGSTOP)
        try:
            results = await asyncio.gather(*(client.execute("PING") for _ in range(5)), return_exceptions=True)
            assert all(isinstance(r, rx.TimeoutError) for r in results), results
        finally:
            os.kill(own_redis.pid, signal.SIGCONT)
        assert await client.execute("PING") == b"PONG"
        assert client.connects == 2
    finally:
        await client.close()


@pytest.mark.usefixtures("redis_server")
async def test_a_restarted_redis_fails_the_call_once_then_reconnects(own_redis):
    client = RespClient(own_redis.unix_url)
    try:
        await client.execute("PING")
        own_redis.kill()
        with pytest.raises(rx.ConnectionError):
            await client.execute("PING")
        with pytest.raises((rx.ConnectionError, OSError)):
            await client.execute("PING")  # nobody listening: the connect itself fails
        own_redis.start()
        assert await client.execute("PING") == b"PONG"
    finally:
        await client.close()


@pytest.mark.usefixtures("redis_server")
async def test_credentials_database_and_client_name(own_redis):
    admin = RespClient(own_redis.url)
    try:
        await admin.execute("ACL", "SETUSER", "alice", "on", ">s3cret", "~*", "+@all")
        alice = RespClient(f"redis://alice:s3cret@127.0.0.1:{own_redis.port}/2")
        await alice.execute("SET", "hr:test:db", "in-two")
        assert await alice.execute("CLIENT", "GETNAME") == b"headroom"
        assert await admin.execute("GET", "hr:test:db") is None  # db 0 does not see db 2
        await alice.close()

        await admin.execute("CONFIG", "SET", "requirepass", "hunter2")
        with pytest.raises(rx.AuthenticationError):
            await RespClient(f"redis://:wrong@127.0.0.1:{own_redis.port}/0").execute("PING")
        with pytest.raises(rx.AuthenticationError):
            await RespClient(own_redis.url).execute("PING")  # NOAUTH
        good = RespClient(f"redis://:hunter2@127.0.0.1:{own_redis.port}/2")
        assert await good.execute("GET", "hr:test:db") == b"in-two"
        await good.close()
    finally:
        await admin.close()


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server that speaks only TLS, with a self-signed certificate for localhost."""
    from testkit.ports import free_port
    from testkit.services import REDIS_BIN

    openssl = shutil.which("openssl")
    if REDIS_BIN is None or openssl is None:
        pytest.skip("needs redis-server and openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([REDIS_BIN, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-auth-clients", "no",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True
            except OSError:
                if proc.poll() is not None:
                    pytest.skip("this redis-server was built without TLS")
                return False

        wait_for(listening, timeout=5, what="the TLS redis-server listening")
        yield port, cert
    finally:
        proc.kill()
        proc.wait()


async def test_tls_verifies_the_server_certificate(tls_redis):
    port, cert = tls_redis
    trusted = RespClient(f"rediss://localhost:{port}/0?ssl_ca_certs={cert}")
    assert await trusted.execute("PING") == b"PONG"
    await trusted.close()

    with pytest.raises(ssl.SSLCertVerificationError):  # self-signed, and not trusted by default
        await RespClient(f"rediss://localhost:{port}/0").execute("PING")

    unverified = RespClient(f"rediss://localhost:{port}/0?ssl_cert_reqs=none")
    assert await unverified.execute("PING") == b"PONG"
    await unverified.close()


async def test_the_store_works_over_tls(tls_redis):
    from headroom.state.redis_store import RedisStore
    from headroom.state.store import GuardRequest

    port, cert = tls_redis
    store = RedisStore(f"rediss://localhost:{port}/0?ssl_ca_certs={cert}")
    try:
        first = await store.guard(GuardRequest("tls-caller", rpm=10))
        second = await store.guard(GuardRequest("tls-caller", rpm=10))
        assert (first.requests_remaining, second.requests_remaining) == (9, 8)
    finally:
        await store.close()


@pytest.mark.usefixtures("redis_server")
async def test_a_readonly_reply_retires_the_connection(own_redis):
    """A primary demoted under us (failover) answers writes with READONLY: the commands in
    flight still get their replies, then the connection closes and the next call opens a
    new one (to wherever the address points now)."""
    from testkit.ports import free_port

    client, admin = RespClient(own_redis.url), RespClient(own_redis.url)
    try:
        await client.execute("SET", "hr:test:ro", "before")
        await admin.execute("REPLICAOF", "127.0.0.1", free_port())  # demoted (its primary need not exist)
        with pytest.raises(rx.ReadOnlyError):
            await client.execute_many([("GET", "hr:test:ro"), ("SET", "hr:test:ro", "x"), ("GET", "hr:test:ro")])
        assert client._connection.closed and client.connects == 1
        assert await client.execute("GET", "hr:test:ro") == b"before"  # a new connection; replicas serve reads
        assert client.connects == 2
        await admin.execute("REPLICAOF", "NO", "ONE")
        await client.execute("SET", "hr:test:ro", "after")
        assert await client.execute("GET", "hr:test:ro") == b"after" and client.connects == 2
        await client.execute("DEL", "hr:test:ro")
    finally:
        await admin.execute("REPLICAOF", "NO", "ONE")
        await client.close()
        await admin.close()


@pytest.fixture
def twin_redis(own_redis, tmp_path):
    """A second redis-server on the same port as ``own_redis`` but at 127.0.0.2."""
    from testkit.services import REDIS_BIN

    proc = subprocess.Popen([REDIS_BIN, "--port", str(own_redis.port), "--bind", "127.0.0.2", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.2", own_redis.port), timeout=0.2):
                    return True
            except OSError:
                assert proc.poll() is None, "redis-server on 127.0.0.2 exited"
                return False

        wait_for(listening, timeout=5, what="the redis-server on 127.0.0.2 listening")
        yield own_redis
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.usefixtures("redis_server")
async def test_a_managed_endpoint_is_resolved_again_on_every_reconnect(twin_redis, monkeypatch):
    """A DNS name that moves to the new primary (managed Redis): the old primary, demoted,
    answers READONLY; the reconnect resolves the name again and lands on the new one.
    The resolver is the event loop's; here it answers 127.0.0.1, then 127.0.0.2."""
    from headroom.state.redis_store import RedisStore
    from headroom.state.store import StoreUnavailable

    own_redis, port = twin_redis, twin_redis.port  # the old primary: 127.0.0.1:port; the new one: 127.0.0.2:port
    loop = asyncio.get_running_loop()
    real_getaddrinfo, lookups, points_to = loop.getaddrinfo, [], ["127.0.0.1"]

    async def getaddrinfo(host, *args, **kwargs):
        if host == "redis.headroom.test":
            lookups.append(points_to[0])
            host = points_to[0]
        return await real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    store = RedisStore(f"redis://redis.headroom.test:{port}/0", retry_interval=0.05)
    old_admin, new_admin = RespClient(own_redis.url), RespClient(f"redis://127.0.0.2:{port}/0")
    try:
        await store.set("hr:test:_all:dns", b"old")
        assert lookups == ["127.0.0.1"]
        # The failover: the new node takes over, the old one follows it, the name moves.
        await old_admin.execute("REPLICAOF", "127.0.0.2", port)
        points_to[0] = "127.0.0.2"
        with pytest.raises(StoreUnavailable, match="READONLY"):
            await store.set("hr:test:_all:dns", b"new")
        async def written() -> bool:
            try:
                await store.set("hr:test:_all:dns", b"new")
                return True
            except StoreUnavailable:
                return False

        await async_wait_for(written, timeout=5, what="a write on the new primary")
        assert lookups == ["127.0.0.1", "127.0.0.2"]
        assert await new_admin.execute("GET", "hr:test:_all:dns") == b"new"
        assert store.healthy and store.health.outages == 1
    finally:
        await store.close()
        await old_admin.execute("REPLICAOF", "NO", "ONE")
        await old_admin.close()
        await new_admin.close()
