"""The engine's :class:`~tgstream.ports.TrackSource` in production: the playlist file's rotation
(:class:`~tgstream.catalog.Catalog`), yt-dlp and ffprobe (:class:`~tgstream.adapters.resolver.
Resolver`), and the keyframe scan that decides whether a track is copied as it is."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from tgstream.adapters.ffmpeg import plan_remux, scan_keyframes
from tgstream.adapters.probe import Prober
from tgstream.adapters.resolver import Expansion, Resolver
from tgstream.catalog import Catalog
from tgstream.config import Quality
from tgstream.domain.playlist import Item
from tgstream.domain.track import Track
from tgstream.ffargs import FfmpegArgs

__all__ = ["PlaylistTracks"]


class PlaylistTracks:
    """One per process (shared by its engines), so the playlist position survives a pause."""

    def __init__(
        self,
        catalog: Catalog,
        resolver: Resolver,
        prober: Prober,
        quality: Quality,
        ffargs: FfmpegArgs,
    ) -> None:
        self.catalog = catalog
        self.resolver = resolver
        self.prober = prober
        self._quality = quality
        self._ffargs = ffargs
        self.scan_next_with_probe = False
        """Scan the next local file's keyframes beside its probe (set for an engine's first
        track on an MPEG-TS output, where the wait for both delays the broadcast's start):
        whether it can be copied is then known one ffprobe sooner. Later tracks are prepared
        ahead, where the scan waits for the probe and only runs when it may be needed."""
        self._early_scan: tuple[str, asyncio.Task[float | None]] | None = None

    @property
    def items(self) -> Sequence[Item]:
        return self.catalog.items

    def next(self) -> Item | None:
        return self.catalog.next()

    def rewind(self, item: Item) -> None:
        self.catalog.rotation.rewind(item)

    def reload_if_changed(self) -> bool:
        return self.catalog.reload_if_changed()

    async def resolve(self, item: Item) -> Track | Expansion:
        # Files only: a stream's scan window depends on whether it is live (the probe says).
        if self.scan_next_with_probe and item.kind == "file":
            self.scan_next_with_probe = False
            await self._drop_early_scan()
            self._early_scan = (item.source, scan_keyframes(self.prober, item.source))
        try:
            resolved = await self.resolver.resolve(item)
        except BaseException:
            await self._drop_early_scan()
            raise
        if isinstance(resolved, Expansion):
            self.catalog.add_expansion(resolved.source, resolved.items)
        return resolved

    async def plan_remux(self, track: Track) -> tuple[Track, bool]:
        scan = None
        if self._early_scan is not None and self._early_scan[0] == track.url:
            scan = self._early_scan[1]
            self._early_scan = None
        return await plan_remux(track, self._quality, self._ffargs, self.prober, scan)

    async def _drop_early_scan(self) -> None:
        early, self._early_scan = self._early_scan, None
        if early is not None:
            early[1].cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await early[1]
