"""The engine's :class:`~tgstream.ports.TrackSource` in production: the playlist file's rotation
(:class:`~tgstream.catalog.Catalog`), yt-dlp and ffprobe (:class:`~tgstream.adapters.resolver.
Resolver`), and the keyframe scan that decides whether a track is copied as it is."""

from __future__ import annotations

from collections.abc import Sequence

from tgstream.adapters.ffmpeg import plan_remux
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
        resolved = await self.resolver.resolve(item)
        if isinstance(resolved, Expansion):
            self.catalog.add_expansion(resolved.source, resolved.items)
        return resolved

    async def plan_remux(self, track: Track) -> tuple[Track, bool]:
        return await plan_remux(track, self._quality, self._ffargs, self.prober)
