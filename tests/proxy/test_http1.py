"""The upstream HTTP/1.1 client against servers scripted byte for byte on real sockets:
every way an answer can be framed, encoded, cut, delayed or refused."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from headroom.proxy import http1

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """A server on 127.0.0.1 running ``handler`` for each connection; its base URL."""
    tasks: set[asyncio.Task] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the test is over (cancelled) or the client went away
        finally:
            writer.close()

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One request's head and body (by Content-Length), or None when the client closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_all(resp: http1.Response) -> tuple[bytes, list[int]]:
    pieces = []
    async for piece in resp.content.iter_any():
        pieces.append(piece)
    return b"".join(pieces), [len(p) for p in pieces]


@pytest.fixture
async def pool() -> AsyncIterator[http1.Pool]:
    pool = http1.Pool(connect_timeout=5, read_timeout=5)
    yield pool
    await pool.close()


async def test_answers_by_length_reuse_one_connection_and_send_the_head_as_given(pool):
    connections, heads = [], []

    async def handler(reader, writer):
        connections.append(writer)
        while (req := await read_request(reader)) is not None:
            heads.append(req)
            writer.write(answer(b'{"ok":1}', "Content-Type: application/json; charset=utf-8",
                                "Set-Cookie: a=1", "Set-Cookie: b=2"))

    async with serving(handler) as base:
        for n in range(3):
            resp = await pool.request("POST", f"{base}/v1/messages?beta=true", [("x-api-key", "k"), ("X-Odd", "A b")],
                                      b'{"n":%d}' % n)
            assert (resp.status, resp.reason, resp.content_type, resp.content_length) == (
                200, "OK", "application/json", 8)
            assert resp.headers.getall("set-cookie") == ["a=1", "b=2"]
            assert (await read_all(resp))[0] == b'{"ok":1}'
            resp.release()
    assert len(connections) == 1
    head, body = heads[2]
    assert head.startswith(b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nx-api-key: k\r\nX-Odd: A b\r\nContent-Length: 7\r\n\r\n" in head
    assert body == b'{"n":2}'


async def test_chunked_and_close_delimited_bodies_arrive_whole(pool):
    async def chunked(reader, writer):
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (b"hello ", b"chunked ", b"world"):
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")

    async def until_close(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"the close")
        await writer.drain()
        writer.close()

    async with serving(chunked) as base:
        for _ in range(2):
            resp = await pool.request("GET", base + "/", [])
            assert (await read_all(resp))[0] == b"hello chunked world"
            resp.release()
    async with serving(until_close) as base:
        resp = await pool.request("GET", base + "/", [])
        assert resp.content_length is None
        assert (await read_all(resp))[0] == b"until the close"
        resp.release()


async def test_an_answer_cut_short_is_an_error_never_a_short_body(pool):
    async def cut(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.close()

    async def cut_chunked(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        writer.close()

    for handler in (cut, cut_chunked):
        async with serving(handler) as base:
            resp = await pool.request("GET", base + "/", [])
            with pytest.raises(http1.ConnectionBroken):
                await read_all(resp)
            resp.release()


async def test_head_204_and_304_have_no_body_and_interim_answers_are_skipped(pool):
    async def handler(reader, writer):
        while (req := await read_request(reader)) is not None:
            head = req[0]
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            elif b"/204" in head:
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif b"/304" in head:
                writer.write(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                             + answer(b"final", status="201 Created"))

    async with serving(handler) as base:
        for method, path, status, body in [("HEAD", "/", 200, b""), ("GET", "/204", 204, b""),
                                           ("GET", "/304", 304, b""), ("POST", "/", 201, b"final"),
                                           ("HEAD", "/", 200, b""), ("GET", "/204", 204, b"")]:
            resp = await asyncio.wait_for(pool.request(method, base + path, [], b"x" if method == "POST" else None), 5)
            assert resp.status == status
            assert (await asyncio.wait_for(read_all(resp), 5))[0] == body
            assert "link" not in resp.headers
            resp.release()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate", "br"])
async def test_encoded_bodies_are_decoded_in_bounded_pieces(pool, encoding):
    plain = b"".join(b"line %d of a long compressible answer\n" % i for i in range(60_000))  # ~2.4 MB
    if encoding == "gzip":
        coded = gzip.compress(plain)
    elif encoding == "deflate":
        coded = zlib.compress(plain)
    elif encoding == "raw-deflate":
        z = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        coded = z.compress(plain) + z.flush()
    else:
        brotli = pytest.importorskip("brotli")
        coded = brotli.compress(plain)
    name = "deflate" if encoding == "raw-deflate" else encoding

    async def handler(reader, writer):
        while await read_request(reader) is not None:
            writer.write(answer(coded, f"Content-Encoding: {name}"))

    async with serving(handler) as base:
        resp = await pool.request("GET", base + "/", [])
        body, sizes = await read_all(resp)
        resp.release()
    assert body == plain
    assert max(sizes) <= 2 * http1.PIECE  # brotli's step limit is approximate; zlib's exact
    assert resp.encoding is None  # decoded
    assert resp.headers["content-encoding"] == name


async def test_a_broken_or_truncated_encoding_fails_and_an_unknown_one_passes_as_it_is(pool):
    coded = gzip.compress(b"x" * 100_000)
    replies = iter([answer(coded[: len(coded) // 2], "Content-Encoding: gzip"),
                    answer(b"not gzip at all", "Content-Encoding: gzip"),
                    answer(b"\x28\xb5\x2f\xfdopaque", "Content-Encoding: zstd")])

    async def handler(reader, writer):
        while await read_request(reader) is not None:
            writer.write(next(replies))

    async with serving(handler) as base:
        for _ in range(2):
            resp = await pool.request("GET", base + "/", [])
            with pytest.raises(http1.ConnectionBroken, match=r"decompress|cut short"):
                await read_all(resp)
            resp.release()
        resp = await pool.request("GET", base + "/", [])
        assert (await read_all(resp))[0] == b"\x28\xb5\x2f\xfdopaque"
        assert resp.encoding == "zstd"
        resp.release()


async def test_the_read_timeout_applies_while_waiting_never_while_the_reader_is_slow():
    pool = http1.Pool(connect_timeout=5, read_timeout=0.3)

    async def silent(reader, writer):
        await read_request(reader)
        await asyncio.sleep(30)

    async def stalls_mid_body(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        await writer.drain()
        await asyncio.sleep(30)

    async def prompt(reader, writer):
        while await read_request(reader) is not None:
            writer.write(answer(b"a" * 1000))

    try:
        async with serving(silent) as base:
            started = asyncio.get_running_loop().time()
            with pytest.raises(http1.ReadTimeout):
                await pool.request("GET", base + "/", [])
            assert asyncio.get_running_loop().time() - started < 2
        async with serving(stalls_mid_body) as base:
            resp = await pool.request("GET", base + "/", [])
            assert await resp.content.readany() == b"half"
            with pytest.raises(TimeoutError):
                await resp.content.readany()
            resp.release()
        async with serving(prompt) as base:
            resp = await pool.request("GET", base + "/", [])
            await asyncio.sleep(0.8)  # the reader is the slow one: nothing times out
            assert (await read_all(resp))[0] == b"a" * 1000
            resp.release()
    finally:
        await pool.close()


async def test_a_slow_reader_pauses_the_upstream_instead_of_buffering_its_answer(pool):
    sent = 0
    total = 64 * 2**20

    async def firehose(reader, writer):
        nonlocal sent
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        piece = b"z" * 2**16
        while sent < total:
            writer.write(piece)
            await writer.drain()
            sent += len(piece)

    async with serving(firehose) as base:
        resp = await pool.request("GET", base + "/", [])
        await asyncio.sleep(1.0)
        assert sent < 16 * 2**20  # socket buffers, not the whole answer
        received = 0
        while piece := await resp.content.readany():
            received += len(piece)
        resp.release()
    assert received == total


async def test_an_idempotent_request_is_sent_again_when_a_kept_connection_died_unanswered(pool):
    served = []

    async def answers_once_per_connection(reader, writer):
        await read_request(reader)
        served.append(1)
        writer.write(answer(b"first"))
        await writer.drain()
        await read_request(reader)  # the next request on this connection: dropped unanswered
        writer.transport.abort()

    async with serving(answers_once_per_connection) as base:
        resp = await pool.request("GET", base + "/", [])
        await read_all(resp)
        resp.release()
        resp = await pool.request("GET", base + "/", [])  # kept connection dies: sent again on a new one
        assert (await read_all(resp))[0] == b"first"
        resp.release()
        with pytest.raises(http1.ConnectionBroken):  # a POST is never sent twice
            await pool.request("POST", base + "/", [], b"{}")
    assert len(served) == 2


async def test_a_refused_connection_a_malformed_answer_and_an_unasked_answer(pool):
    async def malformed(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")

    async def chatty(reader, writer):
        while await read_request(reader) is not None:
            writer.write(answer(b"one") + answer(b"unasked"))

    async with serving(malformed) as base:
        with pytest.raises(http1.ConnectionBroken, match="malformed"):
            await pool.request("GET", base + "/", [])
    async with serving(chatty) as base:
        for _ in range(2):
            resp = await pool.request("GET", base + "/", [])
            assert (await read_all(resp))[0] == b"one"
            resp.release()
    with pytest.raises(http1.Unreachable):
        await pool.request("GET", base + "/", [])  # the server is gone


async def test_header_values_go_out_byte_for_byte_and_line_breaks_are_refused(pool):
    heads = []

    async def handler(reader, writer):
        while (req := await read_request(reader)) is not None:
            heads.append(req[0])
            writer.write(answer(b""))

    async with serving(handler) as base:
        # Sanic decodes header bytes as UTF-8 with surrogate escapes: they go out as received
        resp = await pool.request("GET", base + "/", [("x-key", "sk-\udcff-é")])
        resp.release()
        for bad in (("x-a", "v\r\nx-injected: 1"), ("x-a\r\nx-b", "v"), ("x-a", "v\0")):
            with pytest.raises(ValueError):
                await pool.request("GET", base + "/", [bad])
        with pytest.raises(ValueError):
            await pool.request("GET", base + "/a b HTTP/1.1\r\nx: y", [])
    assert b"\r\nx-key: sk-\xff-\xc3\xa9\r\n" in heads[0]
    assert len(heads) == 1


def test_urls_split_into_origin_and_target():
    assert http1.split_url("https://api.anthropic.com/v1/messages?beta=true") == (
        http1.Origin("https", "api.anthropic.com", 443, "api.anthropic.com"), "/v1/messages?beta=true")
    assert http1.split_url("http://[::1]:8080?x=1") == (http1.Origin("http", "::1", 8080, "[::1]:8080"), "/?x=1")
    assert http1.split_url("HTTP://h:81/p#frag")[1] == "/p"
    for bad in ("ftp://h/", "h/p", "http://user:pw@h/", "http://h:0/", "http://h:x/"):
        with pytest.raises(ValueError):
            http1.split_url(bad)


async def test_a_released_answer_can_no_longer_close_the_connection_it_gave_back(pool):
    connections = []

    async def handler(reader, writer):
        connections.append(writer)
        while await read_request(reader) is not None:
            writer.write(answer(b"ok"))

    async with serving(handler) as base:
        first = await pool.request("GET", base + "/", [])
        await read_all(first)
        first.release()
        second = await pool.request("GET", base + "/", [])  # the same connection, kept alive
        first.close()  # late: must not cut the second request's connection
        assert (await read_all(second))[0] == b"ok"
        second.release()
    assert len(connections) == 1


def certificates(directory, name: str) -> tuple[str, str, str]:
    """A certificate authority and a server certificate for ``name`` it signed: the paths of
    the authority's certificate, the server's certificate and the server's key (PEM)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "headroom test authority")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (str(directory / "ca.pem"), str(directory / "cert.pem"), str(directory / "key.pem"))
    for path, data in zip(paths, (ca.public_bytes(serialization.Encoding.PEM),
                                  leaf.public_bytes(serialization.Encoding.PEM),
                                  key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))):
        with open(path, "wb") as f:
            f.write(data)
    return paths


async def test_https_verifies_the_upstream_and_sends_its_name(tmp_path):
    ca, cert, key = certificates(tmp_path, "localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    names = []
    server_context.sni_callback = lambda _sock, name, _context: names.append(name)  # type: ignore[assignment]

    async def handler(reader, writer):
        try:
            while await read_request(reader) is not None:
                writer.write(answer(b"over tls"))
        except (ConnectionError, asyncio.CancelledError):
            pass

    server = await asyncio.start_server(handler, "localhost", 0, ssl=server_context)
    url = f"https://localhost:{server.sockets[0].getsockname()[1]}/v1/models"
    pool = http1.Pool(connect_timeout=5, read_timeout=5, tls=ssl.create_default_context(cafile=ca))
    stranger = http1.Pool(connect_timeout=5, read_timeout=5)  # the system's trust store: not this authority
    try:
        for _ in range(2):
            resp = await pool.request("GET", url, [])
            assert (await read_all(resp))[0] == b"over tls"
            resp.release()
        assert names == ["localhost"]  # the name sent (SNI); the second request reused the connection
        with pytest.raises(http1.Unreachable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            await stranger.request("GET", url, [])
    finally:
        await pool.close()
        await stranger.close()
        server.close()


async def test_a_connection_that_never_completes_is_a_connect_timeout():
    """A listener whose accept queue is full drops new connections' SYNs: connecting hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(address)
        fillers.append(filler)
    await asyncio.sleep(0.1)
    pool = http1.Pool(connect_timeout=0.5, read_timeout=5)
    started = asyncio.get_running_loop().time()
    try:
        with pytest.raises(http1.ConnectTimeout):
            await pool.request("GET", f"http://127.0.0.1:{address[1]}/", [])
        assert asyncio.get_running_loop().time() - started < 3
    finally:
        await pool.close()
        for s in (*fillers, listener):
            s.close()


async def test_an_upstream_url_the_client_cannot_use_is_a_502_that_does_not_show_it():
    """The configuration refuses such URLs at start-up; one made in code (``ProxyConfig(...)``)
    still gets the native 502 of an unusable upstream, not a 500, and its secret stays out."""
    from headroom.config import ProxyConfig
    from headroom.proxy.upstream import Upstream, UpstreamError, UpstreamRequest

    upstream = Upstream(ProxyConfig())
    await upstream.start()
    try:
        for url in ("ftp://h.example/v1/models", "http://bob:hunter2@h.example/v1/models", "http://h:0/v1"):
            with pytest.raises(UpstreamError) as info:
                await upstream.open(UpstreamRequest("GET", url, [], None))
            assert info.value.status == 502 and "hunter2" not in info.value.message
    finally:
        await upstream.close()


async def test_the_default_tls_context_is_made_once_before_the_first_https_request(monkeypatch):
    """Making it loads the CA store (~30 ms): the proxy makes it once it serves
    (``Upstream.prepare``), not on its first https request; never when no upstream is https."""
    import dataclasses

    from headroom.config import ProxyConfig
    from headroom.proxy.upstream import Upstream

    made = []
    real = ssl.create_default_context
    monkeypatch.setattr(http1.ssl, "create_default_context", lambda: made.append(1) or real())
    plain = dataclasses.replace(ProxyConfig(), anthropic_api_url="http://a", openai_api_url="http://o",
                                gemini_api_url="http://g")
    for config, expected in ((plain, 0), (dataclasses.replace(plain, gemini_api_url="HTTPS://g"), 1)):
        made.clear()
        upstream = Upstream(config)
        await upstream.start()
        try:
            upstream.prepare()
            upstream.prepare()
            assert len(made) == expected
        finally:
            await upstream.close()
