"""Ports of the engine: where its tracks come from, how their processes are spawned, where the
broadcast goes and what it reports. Adapters implement them; tests inject fakes.

The engine's clock is the event loop's (``loop.time()``, which is ``time.monotonic`` in
production): every wait it makes (``asyncio.sleep``, ``asyncio.wait`` timeouts) runs on that
same clock, so a test that runs the engine on a virtual-time loop drives all of them at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tgstream.adapters.feeds import Feed, Unit
from tgstream.adapters.ffmpeg import Recipe
from tgstream.adapters.resolver import Expansion
from tgstream.domain.playlist import Item
from tgstream.domain.track import Track

__all__ = ["Output", "EngineEvents", "TrackSource", "FeedFactory"]


class TrackSource(Protocol):
    """Where the next track comes from: the playlist in rotation, and what an item resolves to.

    ``resolve`` raises :class:`~tgstream.errors.SourceError` for an item that cannot play; an
    :class:`Expansion` (a URL that is a playlist) is recorded by the source, and the engine
    picks again. ``plan_remux`` says whether a resolved track can be copied as it is.
    """

    @property
    def items(self) -> Sequence[Item]: ...

    def next(self) -> Item | None: ...

    def rewind(self, item: Item) -> None: ...

    def reload_if_changed(self) -> bool: ...

    async def resolve(self, item: Item) -> Track | Expansion: ...

    async def plan_remux(self, track: Track) -> tuple[Track, bool]: ...


class FeedFactory(Protocol):
    """The process spawner: the feed (one ffmpeg) of a track from ``start`` seconds, or of the
    slate. The engine spawns, activates, reads and closes what it gets."""

    def track(self, label: str, track: Track, start: float, remux: bool) -> Feed: ...

    def slate(self) -> Feed: ...


class Output(Protocol):
    """Where the broadcast goes. One ``open``, many ``write``, one ``close``.

    ``write`` must not block for long: a slow or disconnected destination drops units and
    reconnects on its own, while the engine's clock keeps running.

    """

    recipe: Recipe
    """``ts`` for outputs fed MPEG-TS, ``raw`` for outputs fed I420 + PCM frames."""
    name: str
    reports_flowing: bool
    """True: the output logs "first frame written to the <name> output" itself, when the
    destination has it (the engine's first write may precede that); False: the engine logs it
    at its first write."""

    async def open(self) -> None: ...

    async def write(self, unit: Unit) -> None: ...

    async def close(self) -> None: ...


class EngineEvents(Protocol):
    """What the engine reports (:class:`tgstream.metrics.Metrics` turns it into metrics).

    ``track_started``: ``prepare_seconds`` is the time to resolve, probe and spawn the track;
    ``gap_seconds`` the output time not covered by media just before it (``None``: none).
    ``track_failed``: ``reason`` is one of ``SOURCE_FAILURE_REASONS``.
    ``source_hole``: a source's timeline skipped ``seconds`` (cut out, not frozen).
    ``output_flowing``: from an output that knows (the RTMP/HLS publisher), whether its
    destination takes the stream now (false until the first attempt gets through, and from a
    loss until the reconnect); outputs that do not report it are taken as flowing.
    """

    def track_started(
        self, title: str, prepare_seconds: float, gap_seconds: float | None
    ) -> None: ...

    def track_ready(self, title: str) -> None: ...

    def track_failed(self, reason: str, detail: str = "") -> None: ...

    def ffmpeg_restarted(self) -> None: ...

    def source_hole(self, seconds: float) -> None: ...

    def output_reconnected(self) -> None: ...

    def output_flowing(self, flowing: bool) -> None: ...

    def playlist_size(self, items: int) -> None: ...

    def state(self, state: str, detail: str = "") -> None: ...
