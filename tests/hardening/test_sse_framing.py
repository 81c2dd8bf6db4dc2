"""SSE framing: the relay and the usage parser give the same result wherever the network
cuts the upstream's stream, and whether events end in ``\\n\\n``, ``\\r\\n\\r\\n`` or ``\\r\\r``.

Property-based (hypothesis): a stream is drawn as events, a line-ending style and the
chunk boundaries it arrives in. The framing (:mod:`headroom.proxy.sse`) and the usage
parser are pure and tested directly; :func:`headroom.proxy.forward.relay_stream` itself is
driven with stand-ins for the aiohttp response and Sanic's streaming response (network
chunking cannot be chosen through a real socket: TCP merges writes as it likes).
"""

from __future__ import annotations

import asyncio
import json
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sanic.compat import Header

from headroom.formats import ANTHROPIC
from headroom.formats import CHAT as OPENAI
from headroom.proxy.exchange import Exchange
from headroom.proxy.forward import relay_stream
from headroom.proxy.sse import EventBuffer, last_event_end, split_events
from headroom.proxy.usage import StreamUsage

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EOLS = ("\n", "\r\n", "\r")

# -- streams --------------------------------------------------------------------------------


def _event(lines: list[str], eol: str) -> bytes:
    # surrogatepass: a lone surrogate becomes bytes that are not UTF-8; the relay is bytes-only
    return ("".join(line + eol for line in lines) + eol).encode("utf-8", "surrogatepass")


def anthropic_stream(eol: str, text_parts: list[str], input_tokens: int, output_tokens: int) -> list[bytes]:
    def event(name: str, payload: dict) -> bytes:
        return _event([f"event: {name}", "data: " + json.dumps(payload, ensure_ascii=False)], eol)

    events = [event("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "usage": {"input_tokens": input_tokens, "cache_read_input_tokens": 7, "output_tokens": 1}}}),
        _event([": a comment line, ignored"], eol),
        event("ping", {"type": "ping"})]
    events += [event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": t}}) for t in text_parts]
    events.append(event("message_delta", {"type": "message_delta", "usage": {"output_tokens": output_tokens}}))
    events.append(event("message_stop", {"type": "message_stop"}))
    return events


def openai_stream(eol: str, text_parts: list[str], prompt: int, completion: int) -> list[bytes]:
    def chunk(payload: dict) -> bytes:
        return _event(["data: " + json.dumps(payload, ensure_ascii=False)], eol)

    events = [chunk({"choices": [{"delta": {"content": t}}], "usage": None}) for t in text_parts]
    events.append(chunk({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}))
    events.append(_event(["data: [DONE]"], eol))
    return events


# Text that stresses framing: line ends escaped inside JSON strings, "data:" look-alikes,
# quotes, every unicode plane.
texts = st.lists(st.text(alphabet=st.sampled_from(list("ab \n\r:{}\"\\é€😀\U0010ffff")) | st.characters(),
                         max_size=12), min_size=0, max_size=6)
counts = st.integers(min_value=0, max_value=2**40)


@st.composite
def cuts(draw, data: bytes) -> list[bytes]:
    """``data`` split at arbitrary boundaries (often mid-terminator)."""
    points = draw(st.lists(st.integers(min_value=0, max_value=len(data)), max_size=12))
    edges = sorted({0, len(data), *points})
    return [data[a:b] for a, b in pairwise(edges)]


def relay(chunks: list[bytes], meter: StreamUsage) -> tuple[bytes, list[bytes]]:
    """What the relay does with each chunk: whole events only, through the usage meter."""
    framing = EventBuffer()
    out, sends = [], []
    for chunk in chunks:
        complete = framing.push(chunk)
        if complete:
            sends.append(complete)
            out.append(meter.feed(complete))
    complete, rest = framing.close()
    if complete:
        sends.append(complete)
        out.append(meter.feed(complete))
    out.append(rest)
    return b"".join(out), sends


# -- the framing itself -----------------------------------------------------------------------


def _spec_event_ends(data: bytes) -> list[int]:
    """The spec's reading, byte by byte: every line end that closes an empty line ends an
    event (the stream is complete: a last CR is a line end)."""
    ends, i, line_start = [], 0, True
    while i < len(data):
        if data.startswith(b"\r\n", i):
            i += 2
        elif data[i] in b"\r\n":
            i += 1
        else:
            line_start = False
            i += 1
            continue
        if line_start:
            ends.append(i)
        line_start = True
    return ends


@SETTINGS
@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"data: x", b"d", b":", b"\r\r", b"\n\n"]), max_size=30),
       st.data())
def test_framing_matches_the_spec_byte_by_byte_whatever_the_chunking(parts, data):
    stream = b"".join(parts)
    ends = _spec_event_ends(stream)
    events = split_events(stream)
    assert b"".join(events) == stream
    assert [sum(map(len, events[:i + 1])) for i in range(len(ends))] == ends
    assert last_event_end(stream, final=True) == (ends[-1] if ends else 0)
    framing = EventBuffer()
    got = b""
    for chunk in data.draw(cuts(stream)):
        sent = framing.push(chunk)
        assert not sent or len(got) + len(sent) in ends  # cut only at event ends
        got += sent
    complete, rest = framing.close()
    assert got + complete + rest == stream
    assert len(got + complete) == (ends[-1] if ends else 0)



def test_every_spec_terminator_ends_an_event():
    for stream in (b"data: 1\n\ndata: 2\n\n", b"data: 1\r\n\r\ndata: 2\r\n\r\n", b"data: 1\r\rdata: 2\r\r",
                   b"data: 1\r\n\ndata: 2\n\r\n", b"data: 1\r\r\ndata: 2\n\r\n"):
        assert [e.split(b"data: ")[1][:1] for e in split_events(stream)] == [b"1", b"2"], stream
        assert b"".join(split_events(stream)) == stream


def test_a_last_cr_waits_for_the_next_byte():
    assert last_event_end(b"data: 1\r\r") == 0  # the second CR may start a CRLF
    assert last_event_end(b"data: 1\r\r", final=True) == len(b"data: 1\r\r")
    assert last_event_end(b"data: 1\r\rd") == len(b"data: 1\r\r")
    assert last_event_end(b"data: 1\r\r\n") == len(b"data: 1\r\r\n")  # CR, then a CRLF blank line
    buffer = EventBuffer()
    assert buffer.push(b"data: 1\r\n\r") == b""
    assert buffer.push(b"\ndata: 2\r\n") == b"data: 1\r\n\r\n"
    assert buffer.close() == (b"", b"data: 2\r\n")  # unfinished: passed on as is, never replayed


def test_a_long_event_in_many_small_chunks_is_not_quadratic():
    import time

    for eol in (b"\n", b"\r\n", b"\r"):
        event = b"data: " + b"x\r" * 50_000 + b"x" * 2_000_000 + eol + eol  # (early CRs: the slow path)
        buffer = EventBuffer()
        started = time.perf_counter()
        out = [buffer.push(event[i:i + 512]) for i in range(0, len(event), 512)]
        out.append(b"".join(buffer.close()))
        assert b"".join(out) == event
        assert time.perf_counter() - started < 2.0, eol


@SETTINGS
@given(st.data(), st.lists(st.tuples(st.lists(st.text(max_size=8), min_size=1, max_size=3),
                                     st.sampled_from(EOLS)), max_size=8))
def test_events_are_the_same_whatever_the_chunking(data, spec):
    stream = b"".join(_event([f"data: {line}".replace("\r", "").replace("\n", "") for line in lines], eol)
                      for lines, eol in spec)
    whole = split_events(stream)
    framing = EventBuffer()
    got = []
    for chunk in data.draw(cuts(stream)):
        got += split_events(framing.push(chunk))
    complete, rest = framing.close()
    got += split_events(complete)
    assert rest == b""
    assert got == whole
    assert b"".join(got) == stream


# -- usage, and the relay's output ------------------------------------------------------------


@SETTINGS
@given(st.data(), st.sampled_from(EOLS), texts, counts, counts)
def test_anthropic_usage_and_bytes_do_not_depend_on_chunking_or_line_ends(data, eol, parts, tokens_in, tokens_out):
    stream = b"".join(anthropic_stream(eol, parts, tokens_in, tokens_out))
    meter = StreamUsage("anthropic")
    passed_on, _ = relay(data.draw(cuts(stream)), meter)
    assert passed_on == stream  # reading usage never changes a byte
    usage = meter.usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (tokens_in, 7, tokens_out)


@SETTINGS
@given(st.data(), st.sampled_from(EOLS), texts, counts, counts, st.booleans())
def test_openai_usage_chunk_is_read_and_stripped_alike_whatever_the_chunking(data, eol, parts, prompt, completion,
                                                                           strip):
    events = openai_stream(eol, parts, prompt, completion)
    stream = b"".join(events)
    meter = StreamUsage("openai", strip_usage_chunk=strip)
    passed_on, _ = relay(data.draw(cuts(stream)), meter)
    expected = b"".join(events[:-2] + events[-1:]) if strip else stream
    assert passed_on == expected
    assert (meter.usage.input_tokens, meter.usage.output_tokens) == (prompt, completion)


@SETTINGS
@given(st.data(), texts)
def test_the_three_framings_read_the_same(data, parts):
    usages = []
    for style in EOLS:
        meter = StreamUsage("openai")
        relay(data.draw(cuts(b"".join(openai_stream(style, parts, 11, 5)))), meter)
        usages.append(meter.usage)
    assert usages[0] == usages[1] == usages[2]


# -- the real relay_stream ---------------------------------------------------------------------


class _Content:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def iter_any(self):
        for chunk in self._chunks:
            yield chunk


class _UpstreamResponse:
    """What relay_stream reads of an aiohttp response: status and content.iter_any()."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.status = 200
        self.content = _Content(chunks)


class _ClientStream:
    """What relay_stream writes to: Sanic's streaming response (send, eof)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.ended = False

    async def send(self, data: bytes) -> None:
        assert not self.ended
        self.sent.append(data)

    async def eof(self) -> None:
        self.ended = True


class _Request:
    def __init__(self) -> None:
        self.stream = _ClientStream()

    async def respond(self, status: int, headers) -> _ClientStream:
        return self.stream


def _run_relay(chunks: list[bytes], provider, strip: bool = False, cache: bool = True):
    request = _Request()
    exchange = Exchange("hr_test", provider, "/v1/x", 0)
    exchange.strip_usage_chunk = strip
    exchange.cache_key = "key" if cache else None
    asyncio.run(relay_stream(request, _UpstreamResponse(chunks), Header({"content-type": "text/event-stream"}),
                             provider, exchange))
    return request.stream, exchange


@SETTINGS
@given(st.data(), st.sampled_from(EOLS), texts, counts, counts)
def test_relay_stream_sends_whole_events_and_the_same_bytes_whatever_the_chunking(data, eol, parts, tokens_in,
                                                                                  tokens_out):
    events = anthropic_stream(eol, parts, tokens_in, tokens_out)
    stream = b"".join(events)
    client, exchange = _run_relay(data.draw(cuts(stream)), ANTHROPIC)
    assert client.ended and b"".join(client.sent) == stream
    for sent in client.sent:  # never half an event
        assert b"".join(split_events(sent)) == sent and last_event_end(sent, final=True) == len(sent)
    assert (exchange.usage.input_tokens, exchange.usage.output_tokens) == (tokens_in, tokens_out)
    assert exchange.answer is not None and exchange.answer.body == stream  # complete: may be replayed


@SETTINGS
@given(st.data(), st.sampled_from(EOLS), texts)
def test_relay_stream_strips_the_usage_chunk_headroom_asked_for_whatever_the_chunking(data, eol, parts):
    events = openai_stream(eol, parts, 40, 3)
    client, exchange = _run_relay(data.draw(cuts(b"".join(events))), OPENAI, strip=True)
    assert b"".join(client.sent) == b"".join(events[:-2] + events[-1:])
    assert (exchange.usage.input_tokens, exchange.usage.output_tokens) == (40, 3)


def test_relay_stream_passes_an_unfinished_last_event_on_but_never_caches_it():
    stream = b"data: {\"a\": 1}\r\rdata: {\"b\""
    client, exchange = _run_relay([stream[:5], stream[5:]], OPENAI)
    assert b"".join(client.sent) == stream and exchange.answer is None
    client, exchange = _run_relay([b"data: 1\r", b"\r"], OPENAI)  # a final CR ends the stream's last event
    assert b"".join(client.sent) == b"data: 1\r\r" and exchange.answer is not None


def test_odd_usage_figures_from_the_upstream_are_ignored_never_a_failure():
    from headroom.proxy.usage import usage_from_body

    for figures in (b'{"input_tokens":"many","output_tokens":2}', b'{"input_tokens":[1],"output_tokens":2}',
                    b'{"input_tokens":1e999,"output_tokens":2}', b'{"input_tokens":' + b"9" * 400 + b"}",
                    b'{"input_tokens":-5,"output_tokens":2}', b'{"cache_creation":"x","input_tokens":{"a":1}}'):
        assert usage_from_body("anthropic", b'{"usage":' + figures + b"}") is None, figures
        openai_figures = figures.replace(b"input_tokens", b"prompt_tokens").replace(b"output", b"completion")
        usage = usage_from_body("openai", b'{"usage":' + openai_figures + b"}")
        assert usage is None or usage.input_tokens == 0, figures  # (OpenAI's input is clamped at 0)
        meter = StreamUsage("anthropic")
        assert meter.feed(b"data: " + b'{"usage":' + figures + b"}\n\n")
        assert meter.usage is None
    assert usage_from_body("openai", b'{"usage":{"prompt_tokens":3,"completion_tokens":1}}').output_tokens == 1
