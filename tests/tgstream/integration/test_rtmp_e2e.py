"""End to end: the real ``tgstream run`` publishes to a real nginx-rtmp; a reader plays it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tgstream.harness import Nginx, assert_continuous, on_air

pytestmark = [pytest.mark.rtmp, pytest.mark.slow]


def test_tracks_arrive_over_one_connection_with_rising_timestamps_and_no_gaps(
    tmp_path: Path, media: Path, media_url: str, rtmp: Nginx
) -> None:
    # A lead-in (a late-joining player starts at a keyframe), then a remuxed local file, an
    # http URL through yt-dlp's generic extractor, and a file that must be transcoded.
    lines = [
        f"{media}/pattern.mp4",
        f"{media}/red.mp4",
        f"{media_url}/green.mp4",
        f"{media}/blue-360p.mp4",
    ]
    with on_air(tmp_path, rtmp, lines) as (service, reader):
        assert service.wait(60) == 0, service.log
    assert_continuous(reader)
    assert rtmp.publishes() == 1, "the publisher reconnected between tracks"
    assert [c for c in reader.colors() if c != "other"] == ["red", "green", "blue"]
    assert len(reader.frames) >= 9 * 30
    assert "Non-monotonous" not in service.log, "the splice overlapped timestamps"
    assert "remux" in service.wait_for(r"now playing: \S*/red\.mp4", 1).string
    assert "transcode" in service.wait_for(r"now playing: \S*/blue-360p\.mp4", 1).string
