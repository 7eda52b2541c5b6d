"""End to end: the real ``tgstream run`` publishes to a real nginx-rtmp; a reader plays it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tgstream.harness import Nginx, RtmpReader, start_service

pytestmark = [pytest.mark.rtmp, pytest.mark.slow]


def _env(playlist: Path, rtmp: Nginx, **extra: str) -> dict[str, str]:
    return {
        "PLAYLIST_FILE": str(playlist),
        "OUTPUT": "rtmp",
        "RTMP_URL": rtmp.url(),
        "LOOP": "0",
        **extra,
    }


def test_tracks_arrive_over_one_connection_with_rising_timestamps_and_no_gaps(
    tmp_path: Path, media: Path, media_url: str, rtmp: Nginx
) -> None:
    # A lead-in (a late-joining player starts at a keyframe), then a remuxed local file, an
    # http URL through yt-dlp's generic extractor, and a file that must be transcoded.
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(
        f"{media}/pattern.mp4\n{media}/red.mp4\n{media_url}/green.mp4\n{media}/blue-360p.mp4\n"
    )
    service = start_service(tmp_path, _env(playlist, rtmp))
    rtmp.wait_publish(30)
    reader = RtmpReader(rtmp.url())
    reader.start()
    try:
        assert service.wait(60) == 0, service.log
    finally:
        reader.stop()
        service.terminate()
    assert reader.connections == 1
    assert rtmp.publishes() == 1, "the publisher reconnected between tracks"
    assert [c for c in reader.colors() if c != "other"] == ["red", "green", "blue"]
    assert reader.monotonic(), "timestamps went backwards"
    assert reader.max_pts_gap() <= 0.2, f"gap of {reader.max_pts_gap():.3f}s between frames"
    assert len(reader.frames) >= 9 * 30
    assert "Non-monotonous" not in service.log, "the splice overlapped timestamps"
    assert "remux" in service.wait_for(r"now playing: \S*/red\.mp4", 1).string
    assert "transcode" in service.wait_for(r"now playing: \S*/blue-360p\.mp4", 1).string
