"""PlaylistTracks: an engine's first local track is probed and keyframe-scanned at once.

The prober is a stand-in at the ffprobe boundary: it records when each of its two commands
starts and answers only when the test lets it, so the order is observed, not timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from opskit.procs import Children
from tgstream.adapters.probe import Prober
from tgstream.adapters.resolver import Resolver
from tgstream.catalog import Catalog
from tgstream.config import QUALITY_PRESETS
from tgstream.domain.track import MediaInfo, Track
from tgstream.ffargs import FfmpegArgs
from tgstream.tracks import PlaylistTracks

Q = QUALITY_PRESETS["720p"]
FITS = MediaInfo(
    duration=60.0,
    vcodec="h264",
    width=1280,
    height=720,
    fps=30.0,
    pix_fmt="yuv420p",
    acodec="aac",
    sample_rate=48_000,
    channels=2,
)


class GatedProber(Prober):
    """ffprobe's two questions, each answered when the test opens its gate."""

    def __init__(self, info: MediaInfo) -> None:
        super().__init__(Children())
        self.info = info
        self.calls: list[str] = []
        self.probe_gate = asyncio.Event()
        self.scan_gate = asyncio.Event()
        self.scans_cancelled = 0

    async def probe(
        self, url: str, headers: Sequence[tuple[str, str]] = (), timeout: float = 20.0
    ) -> MediaInfo:
        self.calls.append(f"probe {Path(url).name}")
        await self.probe_gate.wait()
        return self.info

    async def max_keyframe_interval(
        self, url: str, headers: Sequence[tuple[str, str]] = (), window: float = 12.0
    ) -> float | None:
        self.calls.append(f"scan {Path(url).name}")
        try:
            await self.scan_gate.wait()
        except asyncio.CancelledError:
            self.scans_cancelled += 1
            raise
        return 2.0


def _tracks(tmp_path: Path, info: MediaInfo) -> tuple[PlaylistTracks, GatedProber]:
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.txt").write_text("a.mp4\nb.mp4\n")
    catalog = Catalog(tmp_path / "list.txt")
    catalog.load()
    prober = GatedProber(info)
    resolver = Resolver(Children(), prober, Q)
    return PlaylistTracks(catalog, resolver, prober, Q, FfmpegArgs()), prober


async def _until(condition: object) -> None:
    async with asyncio.timeout(10):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0)


async def test_the_first_track_is_scanned_while_it_is_probed_and_the_scan_is_used(
    tmp_path: Path,
) -> None:
    tracks, prober = _tracks(tmp_path, FITS)
    tracks.scan_next_with_probe = True
    item = tracks.next()
    assert item is not None
    resolving = asyncio.create_task(tracks.resolve(item))
    # Both ffprobes run before the probe has answered.
    await _until(lambda: len(prober.calls) == 2)
    assert sorted(prober.calls) == ["probe a.mp4", "scan a.mp4"]
    prober.probe_gate.set()
    track = await resolving
    assert isinstance(track, Track)
    prober.scan_gate.set()
    planned, remux = await tracks.plan_remux(track)
    assert remux and planned.info.max_keyframe_interval == 2.0
    assert sorted(prober.calls) == ["probe a.mp4", "scan a.mp4"]  # scanned once

    # The next track is prepared ahead: scanned only after its probe says it may be copied.
    item = tracks.next()
    assert item is not None
    prober.calls.clear()
    track = await tracks.resolve(item)
    assert isinstance(track, Track)
    assert prober.calls == ["probe b.mp4"]
    _, remux = await tracks.plan_remux(track)
    assert remux and prober.calls == ["probe b.mp4", "scan b.mp4"]


async def test_the_early_scan_of_a_track_that_cannot_be_copied_is_stopped(
    tmp_path: Path,
) -> None:
    tracks, prober = _tracks(tmp_path, replace(FITS, width=1920, height=1080))
    tracks.scan_next_with_probe = True
    item = tracks.next()
    assert item is not None
    resolving = asyncio.create_task(tracks.resolve(item))
    await _until(lambda: len(prober.calls) == 2)  # the scan's ffprobe is running
    prober.probe_gate.set()
    track = await resolving
    assert isinstance(track, Track)
    _, remux = await tracks.plan_remux(track)
    assert not remux
    assert prober.scans_cancelled == 1


async def test_without_the_flag_nothing_is_scanned_ahead(tmp_path: Path) -> None:
    tracks, prober = _tracks(tmp_path, replace(FITS, width=1920, height=1080))
    item = tracks.next()
    assert item is not None
    prober.probe_gate.set()
    track = await tracks.resolve(item)
    assert isinstance(track, Track)
    await tracks.plan_remux(track)
    assert prober.calls == ["probe a.mp4"]


async def test_a_stream_is_not_scanned_before_its_probe_says_it_is_live(tmp_path: Path) -> None:
    # A live stream's scan window is shorter, and only the probe tells a stream is live.
    (tmp_path / "list.txt").write_text("rtmp://example.test/live/x\n")
    catalog = Catalog(tmp_path / "list.txt")
    catalog.load()
    prober = GatedProber(replace(FITS, width=1920, height=1080))
    tracks = PlaylistTracks(catalog, Resolver(Children(), prober, Q), prober, Q, FfmpegArgs())
    tracks.scan_next_with_probe = True
    item = tracks.next()
    assert item is not None and item.kind == "stream"
    resolving = asyncio.create_task(tracks.resolve(item))
    await _until(lambda: prober.calls)
    await asyncio.sleep(0)  # a scan started with the probe would have run by now (FIFO loop)
    assert prober.calls == ["probe x"]
    prober.probe_gate.set()
    track = await resolving
    assert isinstance(track, Track)
    await tracks.plan_remux(track)
    assert prober.calls == ["probe x"]
