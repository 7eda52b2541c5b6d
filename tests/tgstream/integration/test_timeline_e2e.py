"""End to end, frames on time: what an RTMP player receives from the real ``tgstream run``
through nginx-rtmp, packet by packet (arrival time, DTS, PTS) and decoded with ffmpeg.

Bounds are generous (the machine may be busy): they separate frame-by-frame pacing from the
2-second bursts, and one-frame steps from the multi-frame holes, that these tests guard against.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from pathlib import Path

import pytest

from tests.tgstream.harness import (
    FlvRecorder,
    Nginx,
    Service,
    alive,
    decode_errors,
    played_into,
)
from tgstream.adapters.demo import make_clip

pytestmark = [pytest.mark.rtmp, pytest.mark.slow]

FRAME = 1 / 30
SLACK = 0.004  # FLV timestamps are whole milliseconds
AAC_FRAME = 1024 / 48_000


def recorded(
    cwd: Path, rtmp: Nginx, lines: list[str], **env: str
) -> contextlib.AbstractContextManager[tuple[Service, FlvRecorder]]:
    """``tgstream run`` playing ``lines`` into nginx, one recorder attached from the publish."""
    return played_into(cwd, rtmp, lines, lambda url: FlvRecorder(url, cwd / "recording.flv"), **env)


def steps(values: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(values)]


def assert_rising_dts(recorder: FlvRecorder) -> None:
    for kind in ("video", "audio"):
        dts = [p.dts for p in recorder.of(kind)]
        back = [(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(dts)) if b < a]
        assert not back, f"{kind} DTS went back (index, dts, next): {back[:5]}"


def assert_every_frame_decodes(recorder: FlvRecorder) -> None:
    """Every video frame from the first keyframe the player got decodes (it joined live, maybe
    mid-GOP: the frames before that keyframe cannot)."""
    video = recorder.of("video")
    joined_mid_gop = next(i for i, p in enumerate(video) if p.key)
    packets, frames, errors = decode_errors(recorder.path)
    assert packets == len(video)
    assert not errors, f"the recording does not decode cleanly:\n{errors[:2000]}"
    assert frames == packets - joined_mid_gop, f"{packets} video packets, {frames} decoded"


def test_the_slate_reaches_viewers_frame_by_frame_from_its_first_frame(
    tmp_path: Path, media_url: str, rtmp: Nginx
) -> None:
    # Nothing playable (the URL answers 404): the slate plays through the backoff, which LOOP=1
    # keeps retrying.
    with recorded(tmp_path, rtmp, [f"{media_url}/missing.mp4"], LOOP="1") as (_, rec):
        rec.wait_packets(30 * 6, timeout=60)
    video = rec.of("video")
    assert len(video) >= 30 * 5
    # The old engine wrote the slate in 64 KiB reads of ~2.5 s each, due at their last frame:
    # it arrived in 2 s bursts. Paced per frame, every frame arrives about when it is due.
    assert rec.lag_spread("video") < 0.6
    assert max(steps(sorted(p.pts for p in video))) <= FRAME + SLACK
    # The slate restarts at each backoff round: its sound goes on without a hole (a slate cut
    # after a picture, before that picture's sound, left 45 ms holes). Each restart places the
    # sound after the previous one within half an AAC frame (the rebaser's rule, video kept
    # seamless): a step of up to one and a half frames (seen: 26 ms once in CI).
    audio_steps = steps([p.pts for p in rec.of("audio")])
    assert max(audio_steps) <= 1.5 * AAC_FRAME + SLACK, sorted(audio_steps)[-5:]
    assert_rising_dts(rec)


def test_a_low_bitrate_still_picture_arrives_spread_out_not_in_bursts(
    tmp_path: Path, rtmp: Nginx
) -> None:
    still = make_clip(tmp_path / "still.mp4", 8, color="navy", freq=400)
    assert still.stat().st_size < 8 * 200_000 / 8  # under 200 kbit/s
    with recorded(tmp_path, rtmp, [str(still)]) as (service, rec):
        assert service.wait(60) == 0, service.log
    video = rec.of("video")
    assert len(video) >= 30 * 6
    # Frames spread over the content's own time, not in bursts.
    assert rec.lag_spread("video") < 0.6
    assert_rising_dts(rec)


def test_a_source_paused_mid_track_is_covered_by_the_slate_and_resumes_on_a_keyframe(
    tmp_path: Path, media: Path, rtmp: Nginx
) -> None:
    with recorded(tmp_path, rtmp, [f"{media}/long-green.mp4"]) as (service, rec):
        service.wait_for(r"now playing: \S*long-green", 30)
        rec.wait_packets(30, timeout=30)
        (source,) = [
            pid
            for pid in service.descendants()
            if "long-green" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            and alive(pid)
        ]
        os.kill(source, signal.SIGSTOP)
        try:
            service.wait_for("showing the slate", 15)
            time.sleep(3)  # the pause itself, the condition under test
        finally:
            os.kill(source, signal.SIGCONT)
        assert service.wait(60) == 0, service.log
    assert "Non-monotonous" not in service.log
    assert_rising_dts(rec)
    assert_every_frame_decodes(rec)
    # The first second of the gap is the slate's sound alone, the picture held on the track's
    # last frame (a gap that short resumes on the next frame, nothing lost); then the slate's
    # picture: one step, of the held second, and every other step one frame.
    assert "holding the picture over the slate's sound" in service.log
    video_steps = steps(sorted(p.pts for p in rec.of("video")))
    long_steps = [s for s in video_steps if s > FRAME + SLACK]
    assert len(long_steps) <= 1, long_steps
    assert all(0.9 <= s <= 1.0 + FRAME + 0.1 for s in long_steps), long_steps


def test_track_changes_step_one_frame_and_a_25_fps_source_plays_without_judder(
    tmp_path: Path, media: Path, rtmp: Nginx
) -> None:
    # A 25 fps source (transcoded) opens the broadcast, then remuxed tracks and a transcoded one.
    pal = make_clip(tmp_path / "pal.mp4", 3, color="yellow", size="640x360", fps=25, freq=600)
    lines = [str(pal), f"{media}/red.mp4", f"{media}/green.mp4", f"{media}/blue-360p.mp4"]
    with recorded(tmp_path, rtmp, lines) as (service, rec):
        assert service.wait(90) == 0, service.log
    first_frame = service.log.index("first frame written")
    assert "showing the slate" not in service.log[:first_frame], "the first track opened late"
    assert "transcode" in service.wait_for(r"now playing: \S*/pal\.mp4", 1).string
    video, audio = rec.of("video"), rec.of("audio")
    assert len(video) >= 30 * 9  # 12 s played; the publisher may lose the head (issue 12, 1)
    # Every step in presentation time, including those at the three changes: one frame.
    video_steps = steps(sorted(p.pts for p in video))
    assert max(video_steps) <= FRAME + SLACK, sorted(video_steps)[-5:]
    assert min(video_steps) >= FRAME - SLACK, sorted(video_steps)[:5]
    audio_steps = steps([p.pts for p in audio])
    assert max(audio_steps) <= FRAME + SLACK, sorted(audio_steps)[-5:]
    assert_rising_dts(rec)
    assert_every_frame_decodes(rec)
