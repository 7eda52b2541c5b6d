"""The ``raw`` recipe end to end: the real engine and ffmpeg feed the real Telegram output,
which talks to a fake standing exactly where py-tgcalls stands."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

from pytgcalls.types import Device, ExternalMedia, MediaStream

from opskit.procs import Children
from tests.tgstream.fakes import CHAT, FakeTgCalls, RecordingEvents
from tgstream.adapters.demo import make_clip
from tgstream.adapters.feeds import RawFeed
from tgstream.adapters.ffmpeg import source_argv
from tgstream.adapters.tgcalls import TelegramOutput
from tgstream.bootstrap import build
from tgstream.config import QUALITY_PRESETS, load_settings
from tgstream.domain.playlist import Item
from tgstream.domain.track import MediaInfo, Track
from tgstream.ffargs import FfmpegArgs

Q = QUALITY_PRESETS["360p"]


class TimedTgCalls(FakeTgCalls):
    """Also notes when each video frame arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.frame_times: list[float] = []

    async def send_frame(
        self, chat_id: int | str, device: Device, data: bytes, frame_data: Any = None
    ) -> None:
        await super().send_frame(chat_id, device, data, frame_data)
        if device == Device.CAMERA:
            self.frame_times.append(time.monotonic())


def _colour(frame: bytes) -> str:
    luma = Q.width * Q.height
    u = sum(frame[luma : luma + luma // 4 : 97]) / len(frame[luma : luma + luma // 4 : 97])
    v = sum(frame[luma + luma // 4 :: 97]) / len(frame[luma + luma // 4 :: 97])
    if abs(u - 90) < 12 and abs(v - 240) < 12:
        return "red"
    if abs(u - 91) < 12 and abs(v - 81) < 12:
        return "green"
    return "other"


async def test_raw_frames_reach_py_tgcalls_in_order_at_real_time_pace(
    tmp_path: Path, media: Path
) -> None:
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{media}/red.mp4\n{media}/green.mp4\n")
    settings = load_settings(None, PLAYLIST_FILE=playlist, LOOP=False, VIDEO_QUALITY="360p")
    fake = TimedTgCalls()
    events = RecordingEvents()
    output = TelegramOutput(fake, CHAT, Q, events)
    children = Children()
    runtime = await build(settings, children, output=output)
    started = time.monotonic()
    assert await asyncio.wait_for(runtime.engine.run(asyncio.Event()), 30) == 0
    elapsed = time.monotonic() - started

    ((_, stream, _),) = fake.plays
    assert isinstance(stream, MediaStream)
    assert stream._is_video_external and stream._is_audio_external
    frames = fake.sent(Device.CAMERA)
    assert 170 <= len(frames) <= 185, len(frames)  # two 3 s tracks at 30 fps
    assert all(len(data) == Q.frame_bytes for _, data, _ in frames)
    assert all((info.width, info.height) == (Q.width, Q.height) for _, _, info in frames)
    runs: list[str] = []
    for _, data, _ in frames:
        colour = _colour(data)
        if not runs or runs[-1] != colour:
            runs.append(colour)
    assert runs == ["red", "green"], runs
    audio = fake.sent(Device.MICROPHONE)
    assert {len(data) for _, data, _ in audio} == {1920}
    assert abs(len(audio) * 0.01 - len(frames) / 30) < 0.05  # audio and video stay together
    # Paced like a live source: 6 s of media take about 6 s, never a burst.
    span = fake.frame_times[-1] - fake.frame_times[0]
    assert 5.2 <= span <= 7.0, span
    assert elapsed < 10
    assert ExternalMedia.VIDEO  # the library type the stream was built from


def _psnr(a: bytes, b: bytes) -> float:
    mse = sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) / len(a)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


async def test_a_scaled_source_reaches_the_output_close_to_a_lanczos_reference(
    tmp_path: Path,
) -> None:
    """The raw recipe's real ffmpeg on a 1080p test pattern for the 720p preset: the frame
    RawFeed hands over is whole and stays close to a careful (lanczos) downscale of the same
    decoded frame. Bilinear passes; fast_bilinear fails on chroma and neighbor on luma (38.6
    dB), so the bound tells a cheaper scaler that costs quality from one that does not."""
    q = QUALITY_PRESETS["720p"]
    clip = make_clip(tmp_path / "1080p.mp4", 1, size="1920x1080")
    info = MediaInfo(
        duration=1.0,
        vcodec="h264",
        width=1920,
        height=1080,
        fps=30.0,
        pix_fmt="yuv420p",
        acodec="aac",
        sample_rate=48_000,
        channels=2,
    )
    track = Track(Item("k", str(clip), "file", 1), str(clip), info)
    children = Children()
    feed = RawFeed("scaled", source_argv(track, q, FfmpegArgs(), "raw"), q)
    await feed.spawn(children)
    feed.activate(0.0)
    try:
        await asyncio.wait_for(feed.pending(), 30)
        unit = feed.take()
    finally:
        await feed.close(children)
    assert unit is not None and len(unit.data) == q.frame_bytes
    code, reference, err = await children.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(clip),
            "-frames:v",
            "1",
            "-vf",
            "scale=1280:720:flags=lanczos+accurate_rnd+full_chroma_int",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "rawvideo",
            "-",
        ],
        timeout=60,
    )
    assert code == 0, err
    assert len(reference) == q.frame_bytes
    luma = q.width * q.height
    assert _psnr(unit.data[:luma], reference[:luma]) >= 40.0
    assert _psnr(unit.data[luma:], reference[luma:]) >= 40.0
