"""The wire format: length-prefixed JSON objects, bounded in size."""

from __future__ import annotations

import asyncio
import struct

import pytest

from headroom.workers import frames


def reader_with(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_round_trip_of_several_frames_then_clean_eof():
    messages = [{"id": 1, "op": "compress", "texts": ["héllo ✓", ""], "rate": 0.3},
                {"id": 2, "op": "status"}]
    reader = reader_with(b"".join(frames.encode(m) for m in messages))
    assert [await frames.read_frame(reader), await frames.read_frame(reader)] == messages
    assert await frames.read_frame(reader) is None


def test_header_is_big_endian_length_of_the_utf8_body():
    data = frames.encode({"t": "é"})
    (length,) = struct.unpack(">I", data[:4])
    assert length == len(data) - 4 and data[4:].decode("utf-8") == '{"t":"é"}'


async def test_oversized_frame_is_rejected_before_reading_its_body():
    reader = reader_with(struct.pack(">I", frames.MAX_FRAME + 1))
    with pytest.raises(frames.FrameError, match="exceeds"):
        await frames.read_frame(reader)
    with pytest.raises(frames.FrameError):
        frames.encode({"t": "x" * (frames.MAX_FRAME + 1)})


async def test_custom_limit():
    reader = reader_with(frames.encode({"t": "x" * 100}))
    with pytest.raises(frames.FrameError):
        await frames.read_frame(reader, max_frame=50)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe"])
async def test_body_must_be_a_json_object(body):
    with pytest.raises(frames.FrameError):
        await frames.read_frame(reader_with(struct.pack(">I", len(body)) + body))


async def test_stream_ending_inside_a_frame_is_an_incomplete_read():
    data = frames.encode({"id": 1})
    with pytest.raises(asyncio.IncompleteReadError):
        await frames.read_frame(reader_with(data[:-2]))
    with pytest.raises(asyncio.IncompleteReadError):
        await frames.read_frame(reader_with(data[:2]))
