"""Faults while broadcasting: each is survived without dead air, and logged with its cause."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.tgstream.harness import (
    Nginx,
    alive,
    assert_continuous,
    free_port,
    http_server,
    on_air,
    start_service,
)
from tgstream.adapters.demo import make_clip

pytestmark = [pytest.mark.rtmp, pytest.mark.slow]


def colours(reader_colours: list[str]) -> list[str]:
    return [c for c in reader_colours if c != "other"]


def test_dead_url_mid_playlist_is_skipped_without_a_gap(
    tmp_path: Path, media: Path, media_url: str, rtmp: Nginx
) -> None:
    lines = [
        f"{media}/pattern.mp4",
        f"{media}/red.mp4",
        f"{media_url}/dead.mp4",
        f"{media}/green.mp4",
    ]
    with on_air(tmp_path, rtmp, lines) as (service, reader):
        assert service.wait(90) == 0, service.log
    skipped = [ln for ln in service.lines if "skipping" in ln]
    assert len(skipped) == 1, service.log
    assert "dead.mp4" in skipped[0]
    assert "[not_found]" in skipped[0]
    assert colours(reader.colors()) == ["red", "green"]
    assert_continuous(reader)


def test_ffmpeg_killed_mid_track_resumes_near_where_it_was(
    tmp_path: Path, media: Path, rtmp: Nginx
) -> None:
    lines = [f"{media}/pattern.mp4", f"{media}/long-green.mp4", f"{media}/red.mp4"]
    with on_air(tmp_path, rtmp, lines) as (service, reader):
        service.wait_for(r"now playing: \S*/long-green\.mp4", 30)
        time.sleep(3.0)
        victims = [
            pid
            for pid in service.descendants()
            if b"long-green.mp4" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(victims) == 1, victims
        os.kill(victims[0], signal.SIGKILL)
        service.wait_for(r"resuming at \d", 10)
        assert service.wait(60) == 0, service.log
    seen = colours(reader.colors())
    assert seen[-1] == "red", seen
    assert "green" in seen, seen
    green = reader.seconds_of("green")
    # 8 s clip: resumed at the keyframe before the kill point (GOP 2 s), not restarted at 0.
    assert 7.0 <= green <= 10.5, f"{green:.1f}s of green"
    assert_continuous(reader)


def test_unbalanced_ffmpeg_args_fall_back_with_one_warning(
    tmp_path: Path, media: Path, rtmp: Nginx
) -> None:
    lines = [f"{media}/pattern.mp4", f"{media}/red.mp4"]
    with on_air(tmp_path, rtmp, lines, FFMPEG_ARGS='-b:v "1500k -preset veryfast') as (
        service,
        reader,
    ):
        assert service.wait(90) == 0, service.log
    warnings = [ln for ln in service.lines if "WARNING" in ln and "FFMPEG_ARGS" in ln]
    assert len(warnings) == 1, service.log
    assert "unbalanced" in warnings[0]
    assert "red" in reader.colors()
    assert_continuous(reader)


def test_every_item_failing_shows_the_slate_and_backs_off(
    tmp_path: Path, media_url: str, rtmp: Nginx
) -> None:
    lines = [f"{media_url}/gone-1.mp4", f"{media_url}/gone-2.mp4"]
    with on_air(tmp_path, rtmp, lines, LOOP="1") as (service, reader):
        service.wait_for(r"every playlist item failed in a row.*retrying in 2s", 30)
        reader.wait_frames(60, 15)
        service.wait_for(r"every playlist item failed in a row.*retrying in 4s", 60)
        assert service.terminate() == 0
    # One backoff per failed round of the 2 items: 2 skips, 2 s, 2 skips, 4 s.
    events = [
        "skip" if "skipping" in ln else ln.rsplit("retrying in ", 1)[1].split(";")[0]
        for ln in service.lines
        if "skipping" in ln or "every playlist item failed" in ln
    ]
    assert events[: events.index("4s") + 1] == ["skip", "skip", "2s", "skip", "skip", "4s"]
    assert reader.frames
    assert all(f.color == "slate" for f in reader.frames), reader.colors()
    assert_continuous(reader)


def test_live_hls_source_that_ends_moves_on(tmp_path: Path, media: Path, rtmp: Nginx) -> None:
    site = tmp_path / "site"
    site.mkdir()
    producer = _hls_producer(media / "long-green.mp4", site)
    try:
        with (
            http_server(site) as url,
            on_air(tmp_path, rtmp, [f"{url}/live.m3u8", f"{media}/red.mp4"]) as (service, reader),
        ):
            line = service.wait_for(r"now playing: .*\(live,", 30)
            assert service.wait(60) == 0, service.log
    finally:
        producer.kill()
        producer.wait()
    assert "live" in line.string
    seen = colours(reader.colors())
    assert seen[-1] == "red", seen
    assert "green" in seen, seen
    assert_continuous(reader)


def test_playlist_edited_while_playing_takes_effect_at_the_next_track(
    tmp_path: Path, media: Path, rtmp: Nginx
) -> None:
    with on_air(tmp_path, rtmp, [f"{media}/long-green.mp4", f"{media}/red.mp4"]) as (
        service,
        reader,
    ):
        service.wait_for(r"now playing: \S*/long-green\.mp4", 30)
        time.sleep(1.0)  # red is resolved and waiting by now; the edit must replace it
        (tmp_path / "playlist.txt").write_text(
            f"{media}/long-green.mp4\n{media}/white.mp4\n{media}/blue.mp4\n"
        )
        service.wait_for(r"playlist reloaded", 10)
        assert service.wait(60) == 0, service.log
    assert colours(reader.colors()) == ["green", "white", "blue"]
    assert_continuous(reader)


def test_missing_playlist_exits_3_with_a_clear_message(tmp_path: Path) -> None:
    service = start_service(
        tmp_path, {"PLAYLIST_FILE": str(tmp_path / "nope.txt"), "PREVIEW_PORT": str(free_port())}
    )
    assert service.wait(30) == 3
    assert "nope.txt not found" in service.log
    assert "Traceback" not in service.log


def test_sigterm_stops_cleanly_and_leaves_no_child_behind(tmp_path: Path, media: Path) -> None:
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{media}/pattern.mp4\n{media}/red.mp4\n")
    service = start_service(
        tmp_path, {"PLAYLIST_FILE": str(playlist), "PREVIEW_PORT": str(free_port())}
    )
    service.wait_for(r"now playing", 30)
    time.sleep(1.0)  # the next track's ffmpeg is spawned and waiting too
    children = service.descendants()
    assert len(children) >= 3, children  # publisher, current track, next track or slate
    started = time.monotonic()
    assert service.terminate() == 0, service.log
    assert time.monotonic() - started < 10
    assert [pid for pid in children if alive(pid)] == []
    assert "Traceback" not in service.log


def test_a_stalled_live_source_is_skipped_after_the_stall_timeout(
    tmp_path: Path, media: Path, rtmp: Nginx
) -> None:
    # A live HLS stream whose producer dies while it plays: its playlist never gets an ENDLIST,
    # so the reading ffmpeg polls it forever without output. The engine must notice, skip the
    # stream, and carry on; the producer loops until the test kills it, so the stream dies
    # mid-play however slowly the service starts.
    site = tmp_path / "site"
    site.mkdir()
    producer = _hls_producer(media / "long-green.mp4", site, "-stream_loop", "-1")
    try:
        with (
            http_server(site) as url,
            on_air(tmp_path, rtmp, [f"{url}/live.m3u8", f"{media}/red.mp4"], STALL_TIMEOUT="2") as (
                service,
                reader,
            ),
        ):
            service.wait_for(r"now playing: .*\(live,", 30)
            deadline = time.monotonic() + 20
            while reader.seconds_of("green") < 1.0 and time.monotonic() < deadline:
                time.sleep(0.1)
            producer.kill()
            stalled = service.wait_for(r"skipping .*\[stall\]", 30)
            assert service.wait(60) == 0, service.log
    finally:
        producer.kill()
        producer.wait()
    assert "no output for 2s" in stalled.string
    seen = colours(reader.colors())
    assert seen[-1] == "red", seen
    assert "green" in seen, seen
    # The slate covered the stall: its sound alone for the first second (the picture held on the
    # stream's last frame: one step of up to that second), then its picture; no other gap.
    assert_continuous(reader, max_gap=1.0 + 0.2)
    assert "holding the picture over the slate's sound" in service.log


def test_a_live_source_after_a_long_track_plays_without_holes(
    tmp_path: Path, media: Path, rtmp: Nginx
) -> None:
    # Issue 12, section 4. A live HLS item prepared while an 8 s track plays: started ahead,
    # its ffmpeg read the first segments, blocked on its pipe, and when read 8 s later its next
    # segments had expired (an 8 s window here): it skipped ahead, and the picture froze.
    site = tmp_path / "site"
    site.mkdir()
    # Grain, at an upload's bitrate: a solid colour is so small that seconds of it fit in the
    # pipe, and the early reader would never block.
    clip = make_clip(tmp_path / "red.mp4", 4, color="red", freq=450, noise=True, video_kbps=2500)
    producer = _hls_producer(clip, site, "-stream_loop", "-1", output=("-t", "24"))
    try:
        with (
            http_server(site) as url,
            on_air(
                tmp_path,
                rtmp,
                [f"{media}/long-green.mp4", f"{url}/live.m3u8", f"{media}/blue.mp4"],
            ) as (service, reader),
        ):
            live = service.wait_for(r"now playing: .*\(live,", 60)
            assert service.wait(90) == 0, service.log
    finally:
        producer.kill()
        producer.wait()
    # Logged with its playlist line and URL, not only the extractor's generic title.
    assert f"playlist line 2: {url}/live.m3u8" in live.string
    assert "skipped" not in service.log, service.log  # no hole in the source's timeline
    seen = [c for c in colours(reader.colors()) if c != "slate"]
    assert seen == ["green", "red", "blue"], reader.colors()
    assert reader.seconds_of("red") >= 4.0  # the live stream played, not just its first frames
    assert reader.seconds_of("slate") <= 3.0  # at most its opening is covered by the slate
    assert_continuous(reader)  # every frame present: timestamps up, no gap above 0.2 s


def _hls_producer(
    clip: Path, site: Path, *input_options: str, output: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """A live HLS stream of ``clip`` in ``site/live.m3u8``, once its playlist exists."""
    producer = subprocess.Popen(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            *input_options,
            "-i",
            str(clip),
            "-c",
            "copy",
            *output,
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-hls_list_size",
            "4",
            str(site / "live.m3u8"),
        ]
    )
    deadline = time.monotonic() + 10
    while not (site / "live.m3u8").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return producer
