"""A property over raw request heads: Headroom never frames a request differently from a strict
RFC 9112 reader.

Hypothesis writes a request whose framing headers (content-length, transfer-encoding) come in
every disguise — whitespace or a tab before the colon, folded lines, odd case, duplicates,
both at once, lists of codings — among noise headers mangled the same ways, with a body sent
by length or in chunks whose sizes may be written oddly; a complete second request follows in
the same write. A strict reader (below: the RFC's grammar, refusing everything it leaves
open) gives the bodies a front proxy could agree on. Whatever Headroom does, the bodies the
upstream receives are some of those, in order; when the strict reader refuses the first
request, nothing reaches the upstream and Headroom answers once and closes the connection.
"""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from testkit.llm_requests import GOOD
from testkit.raw_http import converse

AUTH = b"x-api-key: k\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
SECOND_BODY = json.dumps({**GOOD, "messages": [{"role": "user", "content": "second"}]}).encode()
SECOND = (b"POST /v1/messages HTTP/1.1\r\nhost: proxy\r\n%scontent-length: %d\r\nconnection: close\r\n\r\n%s"
          % (AUTH, len(SECOND_BODY), SECOND_BODY))


# --- the strict reader --------------------------------------------------------------------------

_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*((?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?)[ \t]*")
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:;[\t\x20-\x7e]*)?")


def _chunked(rest: bytes) -> tuple[bytes, bytes] | None:
    body = b""
    while True:
        line, sep, rest = rest.partition(b"\r\n")
        match = _CHUNK_LINE.fullmatch(line)
        if not sep or not match:
            return None
        size = int(match[1], 16)
        if size == 0:
            return (body, rest[2:]) if rest.startswith(b"\r\n") else None
        if rest[size:size + 2] != b"\r\n":
            return None
        body, rest = body + rest[:size], rest[size + 2:]


def strict_bodies(data: bytes) -> list[bytes]:
    """The bodies of the requests in ``data`` as a strict reader frames them, up to the first
    request it refuses (or cannot complete)."""
    bodies = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        fields = [_FIELD.fullmatch(line) for line in head.split(b"\r\n")[1:]]
        if not all(fields):
            break
        lengths = [m[2] for m in fields if m[1].lower() == b"content-length"]
        codings = [m[2] for m in fields if m[1].lower() == b"transfer-encoding"]
        if len(lengths) + len(codings) > 1:
            break  # both, or either twice: RFC 9112 §6.3 leaves no safe reading
        if codings:
            if codings[0].lower() != b"chunked" or (framed := _chunked(rest)) is None:
                break
            body, data = framed
        elif lengths:
            if not lengths[0].isdigit() or len(rest) < int(lengths[0]):
                break
            body, data = rest[:int(lengths[0])], rest[int(lengths[0]):]
        else:
            body, data = b"", rest
        bodies.append(body)
    return bodies


def is_subsequence(items: list, of: list) -> bool:
    remaining = iter(of)
    return all(any(item == candidate for candidate in remaining) for item in items)


# --- the requests ---------------------------------------------------------------------------------

CANONICAL = "plain"
NAME_FORMS = [CANONICAL, "title", "upper", "space-before-colon", "tab-before-colon", "folded-name", "folded-value"]
SIZE_FORMS = [b"%x", b"%X", b"000%x", b"%x;ext=1", b"0x%x", b" %x", b"%x ", b"\t%x", b"%x ;ext"]


def field(name: str, value: bytes, form: str) -> bytes:
    """One header line (or two, folded), written in ``form``."""
    raw = {"title": name.title(), "upper": name.upper()}.get(form, name).encode()
    if form == "space-before-colon":
        return raw + b" : " + value + b"\r\n"
    if form == "tab-before-colon":
        return raw + b"\t: " + value + b"\r\n"
    if form == "folded-name":
        return b"x-fold: a\r\n " + raw + b": " + value + b"\r\n"
    if form == "folded-value":
        return raw + b":\r\n " + value + b"\r\n"
    return raw + b": " + value + b"\r\n"


@st.composite
def requests(draw) -> tuple[bytes, bool]:
    """A first request (disguises drawn) followed by :data:`SECOND`; and whether the first was
    written entirely in canonical forms (then Headroom must accept both)."""
    text = draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=40))
    body = json.dumps({**GOOD, "messages": [{"role": "user", "content": text or "x"}]}).encode()
    by_chunks = draw(st.booleans())
    clean = True
    if by_chunks:
        cuts = sorted(draw(st.sets(st.integers(1, len(body) - 1), max_size=2)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        encoded = b""
        for piece in pieces:
            size_form = draw(st.sampled_from([b"%x"] * 6 + SIZE_FORMS))
            clean &= size_form in (b"%x", b"%X", b"000%x", b"%x;ext=1")
            encoded += size_form % len(piece) + b"\r\n" + piece + b"\r\n"
        encoded += b"0\r\n\r\n"
    else:
        encoded = body
    framing = []
    main_form = draw(st.sampled_from([CANONICAL] * 4 + NAME_FORMS))  # mostly plain: the rest must then agree
    clean &= main_form in (CANONICAL, "title", "upper")
    if by_chunks:
        coding = draw(st.sampled_from([b"chunked", b"chunked", b"Chunked", b"chunked, identity", b"gzip, chunked",
                                       b"identity", b"chunked,"]))
        clean &= coding == b"chunked"
        framing.append(field("transfer-encoding", coding, main_form))
    else:
        framing.append(field("content-length", b"%d" % len(encoded), main_form))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):  # extra framing headers, disguised or not
        clean = False
        name = draw(st.sampled_from(["content-length", "transfer-encoding"]))
        value = (draw(st.sampled_from([b"%d" % len(encoded), b"4", b"%d " % len(encoded), b"+4", b"4, 4"]))
                 if name == "content-length" else draw(st.sampled_from([b"chunked", b"identity", b"Chunked"])))
        framing.append(field(name, value, draw(st.sampled_from(NAME_FORMS))))
    noise = []
    for _ in range(draw(st.integers(0, 3))):
        name = "x-n-" + draw(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True))
        value = draw(st.from_regex(r"[a-zA-Z0-9;=,]{0,10}", fullmatch=True)).encode()
        form = draw(st.sampled_from([*[CANONICAL] * 8, "space-before-colon", "tab-before-colon", "folded-name",
                                     "folded-value"]))
        clean &= form == CANONICAL
        noise.append(field(name, value or b"v", form))
    lines = draw(st.permutations(framing + noise))
    first = b"POST /v1/messages HTTP/1.1\r\nhost: proxy\r\n" + AUTH + b"".join(lines) + b"\r\n" + encoded
    return first + SECOND, clean


SETTINGS = settings(max_examples=80, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SETTINGS
@given(generated=requests())
def test_headroom_never_frames_a_request_differently_from_a_strict_reader(still_alive, mock, generated):
    data, clean = generated
    mock.reset()
    talk = converse(still_alive.url, data)
    forwarded = [r["body"].encode("latin-1") for r in mock.requests()]
    strict = strict_bodies(data)
    event("clean" if clean else "strict reader refuses" if not strict else "strict reader accepts")
    event(f"{len(forwarded)} forwarded")
    assert talk.closed, f"connection left open: {talk.statuses}"
    assert all(status < 500 for status in talk.statuses), talk.raw
    assert is_subsequence(forwarded, strict), (forwarded, strict)
    if not strict:  # the first request is refused: answered once, and nothing after it parsed
        assert forwarded == [] and len(talk.replies) == 1, talk.raw
        assert 400 <= talk.statuses[0] < 500 and talk.replies[0].headers.get("connection") == "close", talk.raw
    if clean:
        assert talk.statuses == [200, 200] and forwarded == strict == [strict[0], SECOND_BODY], talk.raw
