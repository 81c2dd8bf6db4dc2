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
import time

import pytest
from redis import exceptions as rx

from headroom.state.resp import Endpoint, RespClient


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
    await asyncio.sleep(0)  # written, reply not read yet
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
        deadline = time.monotonic() + 5
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None:
                    pytest.skip("this redis-server was built without TLS")
                assert time.monotonic() < deadline, "TLS redis-server did not start"
                time.sleep(0.02)
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
