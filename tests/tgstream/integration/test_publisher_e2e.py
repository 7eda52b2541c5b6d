"""The publisher as viewers get it: nginx-rtmp records every publish, and the recordings (and
the preview's HLS segments) are checked frame by frame."""

from __future__ import annotations

import contextlib
import itertools
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.tgstream.harness import (
    Nginx,
    decoded_frames,
    free_port,
    nginx_rtmp,
    packets,
    start_service,
)
from tgstream.adapters.demo import make_clip

pytestmark = [pytest.mark.rtmp, pytest.mark.slow]

FPS = 30


def _rtmp_env(playlist: Path, server: Nginx) -> dict[str, str]:
    return {
        "PLAYLIST_FILE": str(playlist),
        "OUTPUT": "rtmp",
        "RTMP_URL": server.url(),
        "LOOP": "0",
    }


def test_a_clip_played_once_arrives_whole_from_its_first_frame(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "red-4s.mp4", 4, color="red", freq=600)
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{clip}\n")
    with nginx_rtmp(tmp_path / "nginx", record=True) as server:
        service = start_service(tmp_path, _rtmp_env(playlist, server))
        assert service.wait(90) == 0, service.log
    [recording] = server.recordings()
    frames, errors = decoded_frames(recording)
    assert errors == ""
    red = [f for f in frames if f.color == "red"]
    assert len(red) == 4 * FPS, f"{len(red)} of {4 * FPS} frames of the clip arrived"
    # The clip's frames are one run, a frame interval apart: none missing inside.
    first = frames.index(red[0])
    assert frames[first : first + len(red)] == red
    assert max(b.pts - a.pts for a, b in itertools.pairwise(red)) < 1.5 / FPS
    audio = [float(p["pts_time"]) for p in packets(recording) if p["codec_type"] == "audio"]
    # Audio from the clip's start (not a second into it) to its end, starting with the video.
    assert abs(audio[0] - red[0].pts) <= 2 / FPS or audio[0] <= red[0].pts
    assert max(audio) - red[0].pts >= 4.0 - 0.1
    assert len([t for t in audio if t >= red[0].pts - 0.05]) >= 4 * 48000 // 1024 - 2
    assert "first frame written to the rtmp output" in service.log


def _fetch_new_segments(base: str, got: dict[str, bytes]) -> None:
    listing = httpx.get(f"{base}/live.m3u8", timeout=5)
    if listing.status_code != 200:
        return
    for name in re.findall(r"^(seg\d+\.ts)$", listing.text, re.MULTILINE):
        if name not in got:
            answer = httpx.get(f"{base}/{name}", timeout=5)
            if answer.status_code == 200:
                got[name] = answer.content


def test_the_preview_s_first_segment_opens_on_the_first_frame(tmp_path: Path) -> None:
    red = make_clip(tmp_path / "red-4s.mp4", 4, color="red", freq=600)
    green = make_clip(tmp_path / "green-4s.mp4", 4, color="green", freq=700)
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{red}\n{green}\n{red}\n")
    port = free_port()
    service = start_service(
        tmp_path, {"PLAYLIST_FILE": str(playlist), "PREVIEW_PORT": str(port), "LOOP": "0"}
    )
    base = f"http://127.0.0.1:{port}/live"
    got: dict[str, bytes] = {}
    try:
        service.wait_for(r"preview on http://", 30)
        deadline = time.monotonic() + 90
        # Every segment, as it is listed (8 stay listed: 16 s, so none is missed).
        while service.proc.poll() is None and time.monotonic() < deadline:
            try:
                _fetch_new_segments(base, got)
            except httpx.HTTPError:  # the service is stopping: its server goes away
                break
            time.sleep(0.2)
    finally:
        service.terminate()
    assert len(got) >= 4, f"only {sorted(got)} were listed"
    joined = tmp_path / "preview.ts"
    joined.write_bytes(b"".join(got[name] for name in sorted(got)))
    # The head: video and audio start together, on a keyframe (the clip's first frame, or the
    # slate's should the clip be late on a busy machine). With ffmpeg's probe dropping what
    # it read, the video started on the second GOP, 1.4 s after the audio.
    stream = packets(joined)
    video = [p for p in stream if p["codec_type"] == "video"]
    assert video[0]["flags"].startswith("K")
    first_audio = min(float(p["pts_time"]) for p in stream if p["codec_type"] == "audio")
    assert abs(float(video[0]["pts_time"]) - first_audio) <= 2 / FPS
    frames, _ = decoded_frames(joined)
    colours = [f.color for f in frames if f.color != "other"]
    assert colours[:1] == ["red"]
    assert colours.count("green") == 4 * FPS, "the second track arrived whole"


def _stream_up(url: str, expected: bool, timeout: float) -> bool:
    """Whether ``/status`` says ``stream_up`` is ``expected`` within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).json()["stream_up"] is expected:
                return True
        time.sleep(0.1)
    return False


def test_after_the_server_returns_the_stream_resumes_on_a_keyframe(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "pattern-20s.mp4", 20, freq=600)
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{clip}\n")
    port = free_port()
    status = f"http://127.0.0.1:{port}/status"
    with nginx_rtmp(tmp_path / "nginx", record=True) as server:
        service = start_service(
            tmp_path, {**_rtmp_env(playlist, server), "PROMETHEUS_PORT": str(port)}
        )
        try:
            service.wait_for(r"first frame written to the rtmp output", 60)
            assert _stream_up(status, True, 10), "stream_up must be 1 on air"
            recording = server.workdir / "rec"
            deadline = time.monotonic() + 30  # about 2 s of stream on air first
            while sum(f.stat().st_size for f in recording.glob("*.flv")) < 400_000:
                assert time.monotonic() < deadline, "nothing was recorded"
                time.sleep(0.1)
            server.stop()
            # Down until two attempts have failed (1 s, then 2 s after the loss).
            service.wait_for(r"rtmp output: reconnect attempt 2 failed", 30)
            assert httpx.get(status, timeout=5).json()["stream_up"] is False, (
                "stream_up must be 0 while the viewers get nothing"
            )
            server.start()
            back = time.monotonic()
            server.wait_publish(30, count=2)
            returned_in = time.monotonic() - back
            assert _stream_up(status, True, 10), "stream_up must be 1 again once back"
            assert service.wait(90) == 0, service.log
        finally:
            service.terminate()
    log = service.log
    assert returned_in < 10, f"published again {returned_in:.1f}s after the server's return"

    # One line for the loss, one per attempt (with a growing wait), one for the return.
    assert len(re.findall(r"rtmp output lost \(", log)) == 1, log
    attempts = re.findall(
        r"rtmp output: reconnect attempt (\d+) failed \([^)]*\); next attempt in (\d+)s", log
    )
    assert [int(n) for n, _ in attempts] == list(range(1, len(attempts) + 1)), log
    waits = [int(w) for _, w in attempts]
    assert waits == sorted(waits), log
    assert waits[:2] == [2, 4], log
    back_line = re.findall(r"rtmp output back: reconnect attempt (\d+) reached the server", log)
    assert back_line == [str(len(attempts) + 1)], log
    lines = log.splitlines()
    lost_at = next(i for i, line in enumerate(lines) if "rtmp output lost (" in line)
    publisher = [line for line in lines[lost_at:] if "tgstream.adapters.publisher" in line]
    assert len(publisher) == 1 + len(attempts) + 1, "\n".join(publisher)
    assert "<RTMP_URL path>" in log or "/live/test" not in log

    _first, second = server.recordings()
    after = packets(second)
    video = [p for p in after if p["codec_type"] == "video"]
    assert video[0]["flags"].startswith("K"), "the stream must resume on a keyframe"
    assert len(video) >= 2 * FPS
    frames, errors = decoded_frames(second)
    assert errors == "", errors
    assert len(frames) == len(video)
    dts = [float(p["dts_time"]) for p in after if p["codec_type"] == "video"]
    assert all(b > a for a, b in itertools.pairwise(dts)), "video DTS must only go up"
    assert "/live/test" not in log, "the RTMP URL's path (stream key) leaked into the log"
