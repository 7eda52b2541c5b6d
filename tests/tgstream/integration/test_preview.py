"""The preview output: HLS and a player page on loopback, what `make run` shows an operator."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.tgstream.harness import free_port, start_service


def test_preview_serves_a_playable_hls_stream_and_its_page(tmp_path: Path, media: Path) -> None:
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{media}/red.mp4\n{media}/blue-360p.mp4\n")
    port = free_port()
    service = start_service(tmp_path, {"PLAYLIST_FILE": str(playlist), "PREVIEW_PORT": str(port)})
    base = f"http://127.0.0.1:{port}"
    try:
        service.wait_for(r"preview on http://127\.0\.0\.1:\d+/", 30)
        page = httpx.get(f"{base}/", timeout=5)
        assert page.status_code == 200
        assert "<video" in page.text
        assert "live/live.m3u8" in page.text
        script = httpx.get(f"{base}/hls.min.js", timeout=5)
        assert script.status_code == 200
        assert "Hls" in script.text[:200_000]

        segments: list[str] = []
        deadline = time.monotonic() + 30
        while len(segments) < 2 and time.monotonic() < deadline:
            answer = httpx.get(f"{base}/live/live.m3u8", timeout=5)
            if answer.status_code == 200:
                segments = [ln for ln in answer.text.splitlines() if ln.endswith(".ts")]
            time.sleep(0.3)
        assert len(segments) >= 2, "the playlist never listed two segments"
        segment = tmp_path / "segment.ts"
        segment.write_bytes(httpx.get(f"{base}/live/{segments[0]}", timeout=5).content)
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(segment)],
            capture_output=True,
            text=True,
            check=True,
        )
        streams = {s["codec_type"]: s for s in json.loads(probe.stdout)["streams"]}
        assert streams["video"]["codec_name"] == "h264"
        assert (streams["video"]["width"], streams["video"]["height"]) == (1280, 720)
        assert streams["audio"]["codec_name"] == "aac"
    finally:
        assert service.terminate() == 0, service.log
    with pytest.raises(httpx.ConnectError):  # the preview server went with the service
        httpx.get(f"{base}/", timeout=2)
