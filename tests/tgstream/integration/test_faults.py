"""Faults while broadcasting: each is survived without dead air, and logged with its cause."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.tgstream.harness import Nginx, RtmpReader, alive, free_port, http_server, start_service

pytestmark = [pytest.mark.rtmp, pytest.mark.slow]


def _rtmp_env(playlist: Path, rtmp: Nginx, **extra: str) -> dict[str, str]:
    return {
        "PLAYLIST_FILE": str(playlist),
        "OUTPUT": "rtmp",
        "RTMP_URL": rtmp.url(),
        "LOOP": "0",
        **extra,
    }


def _broadcast(tmp: Path, rtmp: Nginx, lines: list[str], **env: str) -> tuple[RtmpReader, str]:
    """Play ``lines`` once to nginx with a reader attached; returns the reader and the log."""
    playlist = tmp / "playlist.txt"
    playlist.write_text("\n".join(lines) + "\n")
    service = start_service(tmp, _rtmp_env(playlist, rtmp, **env))
    rtmp.wait_publish(30)
    reader = RtmpReader(rtmp.url())
    reader.start()
    try:
        assert service.wait(90) == 0, service.log
    finally:
        reader.stop()
        service.terminate()
    return reader, service.log


def _continuous(reader: RtmpReader) -> None:
    assert reader.connections == 1
    assert reader.monotonic(), "timestamps went backwards"
    assert reader.max_pts_gap() <= 0.2, f"gap of {reader.max_pts_gap():.3f}s"


def test_dead_url_mid_playlist_is_skipped_without_a_gap(
    tmp_path: Path, media: Path, media_url: str, rtmp: Nginx
) -> None:
    reader, log = _broadcast(
        tmp_path,
        rtmp,
        [f"{media}/pattern.mp4", f"{media}/red.mp4", f"{media_url}/dead.mp4", f"{media}/green.mp4"],
    )
    skipped = [ln for ln in log.splitlines() if "skipping" in ln]
    assert len(skipped) == 1, log
    assert "dead.mp4" in skipped[0]
    assert "[not_found]" in skipped[0]
    colours = [c for c in reader.colors() if c != "other"]
    assert colours == ["red", "green"], colours
    _continuous(reader)


def test_ffmpeg_killed_mid_track_resumes_near_where_it_was(
    tmp_path: Path, media: Path, rtmp: Nginx
) -> None:
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{media}/pattern.mp4\n{media}/long-green.mp4\n{media}/red.mp4\n")
    service = start_service(tmp_path, _rtmp_env(playlist, rtmp))
    rtmp.wait_publish(30)
    reader = RtmpReader(rtmp.url())
    reader.start()
    try:
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
    finally:
        reader.stop()
        service.terminate()
    colours = [c for c in reader.colors() if c != "other"]
    assert colours[-1] == "red", colours
    assert "green" in colours, colours
    green = reader.seconds_of("green")
    # 8 s clip: resumed at the keyframe before the kill point (GOP 2 s), not restarted at 0.
    assert 7.0 <= green <= 10.5, f"{green:.1f}s of green"
    _continuous(reader)


def test_unbalanced_ffmpeg_args_fall_back_with_one_warning(
    tmp_path: Path, media: Path, rtmp: Nginx
) -> None:
    reader, log = _broadcast(
        tmp_path,
        rtmp,
        [f"{media}/pattern.mp4", f"{media}/red.mp4"],
        FFMPEG_ARGS='-b:v "1500k -preset veryfast',
    )
    warnings = [ln for ln in log.splitlines() if "WARNING" in ln and "FFMPEG_ARGS" in ln]
    assert len(warnings) == 1, log
    assert "unbalanced" in warnings[0]
    assert "red" in reader.colors()
    _continuous(reader)


def test_every_item_failing_shows_the_slate_and_backs_off(
    tmp_path: Path, media_url: str, rtmp: Nginx
) -> None:
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{media_url}/gone-1.mp4\n{media_url}/gone-2.mp4\n")
    service = start_service(tmp_path, _rtmp_env(playlist, rtmp, LOOP="1"))
    try:
        rtmp.wait_publish(30)
        reader = RtmpReader(rtmp.url())
        reader.start()
        service.wait_for(r"every playlist item failed in a row.*retrying in 2s", 30)
        reader.wait_frames(60, 15)
        reader.stop()
    finally:
        assert service.terminate() == 0
    assert reader.frames
    assert all(f.color == "slate" for f in reader.frames), reader.colors()
    _continuous(reader)


def test_live_hls_source_that_ends_moves_on(tmp_path: Path, media: Path, rtmp: Nginx) -> None:
    site = tmp_path / "site"
    site.mkdir()
    producer = subprocess.Popen(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-i",
            str(media / "long-green.mp4"),
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-hls_list_size",
            "4",
            str(site / "live.m3u8"),
        ]
    )
    try:
        deadline = time.monotonic() + 10
        while not (site / "live.m3u8").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with http_server(site) as url:
            playlist = tmp_path / "playlist.txt"
            playlist.write_text(f"{url}/live.m3u8\n{media}/red.mp4\n")
            service = start_service(tmp_path, _rtmp_env(playlist, rtmp))
            rtmp.wait_publish(30)
            reader = RtmpReader(rtmp.url())
            reader.start()
            try:
                line = service.wait_for(r"now playing: .*\(live,", 30)
                assert service.wait(60) == 0, service.log
            finally:
                reader.stop()
                service.terminate()
    finally:
        producer.kill()
        producer.wait()
    assert "live" in line.string
    colours = [c for c in reader.colors() if c != "other"]
    assert colours[-1] == "red", colours
    assert "green" in colours, colours
    _continuous(reader)


def test_playlist_edited_while_playing_takes_effect_at_the_next_track(
    tmp_path: Path, media: Path, rtmp: Nginx
) -> None:
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{media}/long-green.mp4\n{media}/red.mp4\n")
    service = start_service(tmp_path, _rtmp_env(playlist, rtmp))
    rtmp.wait_publish(30)
    reader = RtmpReader(rtmp.url())
    reader.start()
    try:
        service.wait_for(r"now playing: \S*/long-green\.mp4", 30)
        time.sleep(1.0)  # red is resolved and waiting by now; the edit must replace it
        playlist.write_text(f"{media}/long-green.mp4\n{media}/white.mp4\n{media}/blue.mp4\n")
        service.wait_for(r"playlist reloaded", 10)
        assert service.wait(60) == 0, service.log
    finally:
        reader.stop()
        service.terminate()
    colours = [c for c in reader.colors() if c != "other"]
    assert colours == ["green", "white", "blue"], colours
    _continuous(reader)


def test_missing_playlist_exits_3_with_a_clear_message(tmp_path: Path) -> None:
    service = start_service(
        tmp_path, {"PLAYLIST_FILE": str(tmp_path / "nope.txt"), "PREVIEW_PORT": str(free_port())}
    )
    assert service.wait(30) == 3
    assert "nope.txt not found" in service.log
    assert "Traceback" not in service.log


def test_sigterm_stops_cleanly_and_leaves_no_child_behind(tmp_path: Path, media: Path) -> None:
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{media}/pattern.mp4\n{media_url_free(media)}\n")
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


def media_url_free(media: Path) -> str:
    return str(media / "red.mp4")
