"""RawFeed's readers against a stand-in ffmpeg that writes the two pipes in awkward pieces.

The writer is a real process on real pipes (what RawFeed spawns), writing YUV4MPEG2 as ffmpeg
does, each 720p frame (1.4 MB, more than an unprivileged pipe holds) in chunks that straddle
frame boundaries and the pipe's buffer, with the audio interleaved; each frame and each audio
tick carry their index, so a torn, lost, reordered or shifted frame shows.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable

import pytest

from opskit.procs import Children
from tgstream.adapters.feeds import _VIDEO_BURST_FRAMES, _VIDEO_QUEUE_FRAMES, RawFeed, Unit
from tgstream.config import QUALITY_PRESETS, Quality

Q = QUALITY_PRESETS["720p"]
AUDIO_TICK = Q.sample_rate * Q.channels * 2 // Q.fps  # 6400 bytes

WRITER = r"""
import os, sys
video, audio = (int(a.split(":")[1]) for a in sys.argv[1:3])
frames, frame_bytes, tick, torn, lag = (int(a) for a in sys.argv[3:8])
header = sys.argv[8].encode()
sizes = [4093, 65537, 300001, 1 << 20, 12345, 777777]

def write(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

def pattern(i, n):
    # The index in the first 4 bytes, then a byte that changes with it.
    return i.to_bytes(4, "big") + bytes([i % 251]) * (n - 4)

pending = header
for i in range(frames):
    if video >= 0:
        pending += b"FRAME\n" + pattern(i, frame_bytes)
        while len(pending) >= 1 << 21 or (i == frames - 1 and pending):
            size = sizes[i % len(sizes)]
            write(video, pending[:size])
            pending = pending[size:]
    # ffmpeg holds some audio back (a file's PCM goes out in 32 KiB writes): ``lag`` frames.
    last = i if i == frames - 1 else i - lag
    for j in range(max(0, i - lag), last + 1):
        sound = pattern(j, tick)
        write(audio, sound[:1000])
        write(audio, sound[1000:])
if video >= 0 and torn:
    write(video, b"FRAME\n" + pattern(frames, frame_bytes)[: frame_bytes // 2])
"""


def _writer_argv(
    frames: int, q: Quality, torn: bool = False, size: str = "W1280 H720", lag: int = 0
) -> list[str]:
    """What ffmpeg writes for the raw recipe: YUV4MPEG2 frames on fd 3, PCM on fd 4."""
    return [
        sys.executable,
        "-c",
        WRITER,
        "pipe:3" if q.has_video else "pipe:-1",
        "pipe:4",
        str(frames),
        str(q.frame_bytes),
        str(AUDIO_TICK),
        str(int(torn)),
        str(lag),
        f"YUV4MPEG2 {size} F30:1 Ip A1:1 C420mpeg2 XYSCSS=420MPEG2\n",
    ]


async def _read_all(feed: RawFeed) -> list[Unit]:
    units: list[Unit] = []
    while True:
        await asyncio.wait_for(feed.pending(), 30)
        unit = feed.take()
        if unit is None:
            return units
        units.append(unit)


def _index(data: bytes) -> int:
    return int.from_bytes(data[:4], "big")


async def test_frames_are_whole_and_in_order_across_pipe_buffer_boundaries() -> None:
    children = Children()
    frames = 40
    feed = RawFeed("test", _writer_argv(frames, Q, torn=True), Q)
    await feed.spawn(children)
    feed.activate(1.0)
    try:
        units = await _read_all(feed)
    finally:
        await feed.close(children)
    # The torn frame after the last whole one is dropped, not padded.
    assert len(units) == frames
    for i, unit in enumerate(units):
        assert type(unit.data) is bytes  # what py-tgcalls' send_frame accepts
        assert len(unit.data) == Q.frame_bytes
        assert _index(unit.data) == i
        assert unit.data[4:] == bytes([i % 251]) * (Q.frame_bytes - 4), f"frame {i} is torn"
        # The audio of the same tick, whole and beside its frame.
        assert type(unit.audio) is bytes
        assert len(unit.audio) == AUDIO_TICK
        assert _index(unit.audio) == i
        assert unit.audio[4:] == bytes([i % 251]) * (AUDIO_TICK - 4)
        assert abs(unit.pts - (1.0 + i / Q.fps)) < 1e-9


async def test_audio_only_feed_yields_whole_ticks() -> None:
    q = QUALITY_PRESETS["audio"]
    children = Children()
    feed = RawFeed("test", _writer_argv(25, q), q)
    await feed.spawn(children)
    feed.activate(0.0)
    try:
        units = await _read_all(feed)
    finally:
        await feed.close(children)
    assert [_index(u.audio) for u in units] == list(range(25))
    assert all(u.data == b"" and len(u.audio) == AUDIO_TICK for u in units)


async def test_frames_of_another_size_end_the_track_with_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    children = Children()
    feed = RawFeed("test", _writer_argv(5, Q, size="W640 H360"), Q)
    await feed.spawn(children)
    feed.activate(0.0)
    try:
        units = await _read_all(feed)
    finally:
        await feed.close(children)
    assert units == []
    (record,) = [r for r in caplog.records if r.name == "tgstream.adapters.feeds"]
    assert "640x360" in record.getMessage() and "1280x720" in record.getMessage()
    assert "FFMPEG_ARGS" in record.getMessage()


def _reader_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "raw-video:test")


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def _until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_read_ahead_is_bounded_and_close_ends_a_blocked_reader() -> None:
    children = Children()
    before_fds = _open_fds()
    feed = RawFeed("test", _writer_argv(10_000, Q), Q)  # far more than is read ahead
    await feed.spawn(children)
    feed.activate(0.0)
    await asyncio.wait_for(feed.pending(), 30)
    unit = feed.take()
    assert unit is not None and _index(unit.data) == 0
    # The reader fills its queue, then waits for room with the writer blocked on the pipe.
    await _until(lambda: feed.frames_ahead >= _VIDEO_QUEUE_FRAMES - 1)
    # It reads again only once a burst fits, and then fills the queue to its depth exactly.
    for n in range(1, _VIDEO_BURST_FRAMES):
        await asyncio.wait_for(feed.pending(), 30)
        unit = feed.take()
        assert unit is not None and _index(unit.data) == n
    await _until(lambda: feed.frames_ahead >= _VIDEO_QUEUE_FRAMES)
    assert feed.frames_ahead == _VIDEO_QUEUE_FRAMES
    assert _reader_threads() == 1
    await asyncio.wait_for(feed.close(children), 15)
    assert _reader_threads() == 0
    assert _open_fds() <= before_fds


async def test_audio_held_back_longer_than_the_read_ahead_does_not_stall_the_feed() -> None:
    # ffmpeg writes a frame's audio only after more frames of video than the reader keeps
    # between bursts: the consumer waiting for that audio makes the reader read what fits.
    lag = _VIDEO_QUEUE_FRAMES - _VIDEO_BURST_FRAMES + 3
    children = Children()
    feed = RawFeed("test", _writer_argv(60, Q, lag=lag), Q)
    await feed.spawn(children)
    feed.activate(0.0)
    try:
        units = await asyncio.wait_for(_read_all(feed), 60)
    finally:
        await feed.close(children)
    assert [_index(u.data) for u in units] == list(range(60))
    assert [_index(u.audio) for u in units] == list(range(60))
