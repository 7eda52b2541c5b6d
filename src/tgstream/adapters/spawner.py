"""The engine's :class:`~tgstream.ports.FeedFactory` in production: feeds that run ffmpeg.

One factory per engine (per output): its TS feeds share one :class:`TsTimeline` (continuity
counters, where each stream's last unit ended), so every source and the slate continue one
another on that output.
"""

from __future__ import annotations

from collections.abc import Callable

from tgstream.adapters.feeds import Feed, RawFeed, TsFeed
from tgstream.adapters.ffmpeg import Recipe, slate_argv, source_argv
from tgstream.adapters.mpegts import TsTimeline
from tgstream.config import Quality
from tgstream.domain.track import Track
from tgstream.ffargs import FfmpegArgs

__all__ = ["FfmpegFeeds"]


def _streams(q: Quality) -> int:
    """Elementary streams in every TS feed: audio, and video unless the preset is audio-only."""
    return 2 if q.has_video else 1


class FfmpegFeeds:
    def __init__(
        self,
        quality: Quality,
        ffargs: FfmpegArgs,
        recipe: Recipe,
        on_hole: Callable[[float], None] | None = None,
    ) -> None:
        """``on_hole``: called with the seconds of each hole cut out of a source's timeline."""
        self.quality = quality
        self.ffargs = ffargs
        self.recipe: Recipe = recipe
        self.on_hole = on_hole
        self._ts_timeline = TsTimeline()

    def track(self, label: str, track: Track, start: float, remux: bool) -> Feed:
        q = self.quality
        argv = source_argv(track, q, self.ffargs, self.recipe, start, remux)
        if self.recipe == "ts":
            return TsFeed(
                label, argv, self._ts_timeline, 1 / q.fps, start, _streams(q), self.on_hole
            )
        return RawFeed(label, argv, q, start)

    def slate(self) -> Feed:
        q = self.quality
        argv = slate_argv(q, self.ffargs, self.recipe)
        if self.recipe == "ts":
            return TsFeed("slate", argv, self._ts_timeline, 1 / q.fps, streams=_streams(q))
        return RawFeed("slate", argv, q)
