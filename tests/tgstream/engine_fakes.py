"""The engine's ports faked, and a virtual-time event loop: the play loop's rules run in
milliseconds, with every wait (pacing, timeouts, backoff) measured on a clock that jumps.

- :class:`VirtualTimeLoop`: ``loop.time()`` is virtual. Whenever no callback is ready and no
  file descriptor is readable, the loop jumps to its next timer instead of sleeping, so
  ``asyncio.sleep``, ``asyncio.wait(timeout=...)`` and ``wait_for`` all run on it. Everything
  blocked with no timer set is a deadlock, and raises instead of hanging.
- :class:`FakeTracks` (``TrackSource``): a playlist in rotation (the real ``Rotation``), items
  that resolve after a scripted delay to a scripted ``MediaInfo`` or ``SourceError``.
- :class:`FakeFeeds` (``FeedFactory``): feeds that play a script of :class:`Units`,
  :class:`Wait` (a read that blocks: slow first read, stall) and :class:`End` (EOF, crash).
- :class:`FakeOutput` (``Output``): records each unit with the virtual time it was written.
"""

from __future__ import annotations

import asyncio
import itertools
import selectors
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opskit.procs import Children
from tgstream.adapters.feeds import Feed, Unit
from tgstream.adapters.ffmpeg import Recipe
from tgstream.adapters.resolver import Expansion
from tgstream.config import QUALITY_PRESETS
from tgstream.domain.playlist import Item, Rotation
from tgstream.domain.track import MediaInfo, Track
from tgstream.engine import Engine, EngineOptions, NullEvents
from tgstream.errors import ExitCode, SourceError

Q = QUALITY_PRESETS["720p"]
FRAME = 1 / Q.fps
START_TIME = 1000.0
"""Virtual time at the start of a run (not 0: nothing may assume it)."""


# ---- virtual time ----------------------------------------------------------------------------


class _VirtualSelector(selectors.DefaultSelector):
    """Polls real descriptors without blocking; a wait for a timer moves virtual time instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = START_TIME

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # nothing ready, no timer: only another thread could wake us
            ready = super().select(2.0)
            if not ready:
                raise RuntimeError("virtual time: every task waits and no timer is set")
            return ready
        self.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


T = TypeVar("T")


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh virtual-time loop."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)


def now() -> float:
    return asyncio.get_running_loop().time()


# ---- feeds -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Units:
    """``n`` units of ``duration`` seconds each, ready to read at once (a fast ffmpeg)."""

    n: int
    duration: float = FRAME


@dataclass(frozen=True)
class Wait:
    """The next read blocks for ``seconds`` (first-read latency; a stall when long)."""

    seconds: float


@dataclass(frozen=True)
class End:
    """End of stream; the ffmpeg exits with ``rc`` (non-zero: a crash)."""

    rc: int = 0


Step = Units | Wait | End


def seconds_of(seconds: float, first_read: float = 0.0) -> list[Step]:
    """The script of a file that plays ``seconds`` and ends normally."""
    return [Wait(first_read), Units(round(seconds * Q.fps)), End(0)]


class FakeFeed(Feed):
    """A feed that plays a script; notes when it was spawned, first read, ended and closed.

    With ``gop`` (frames), it behaves like MPEG-TS video: after the slate's picture interrupted
    it, it resumes on its next keyframe (a unit whose index is a multiple of ``gop``), the
    units before it dropped (counted in ``dropped``); after the slate's sound alone, on its
    next unit. ``audio_only`` makes its units sound only (``data`` empty, label in ``audio``).
    Units are placed one after another from the activation offset, whatever was dropped."""

    def __init__(
        self, label: str, script: Iterable[Step], start: float = 0.0, gop: int | None = None
    ) -> None:
        super().__init__(label, [], start)
        self.gop = gop
        self.dropped = 0
        self._index = 0
        self._placed = 0.0
        self._to_key = False
        self._sound_only = False
        self._steps: Iterator[Step] = iter(script)
        self._left = 0
        self._duration = FRAME
        self._source = 0.0
        self.rc: int | None = None
        self.spawned_at: float | None = None
        self.first_read_at: float | None = None
        self.eof_at: float | None = None
        self.closed_at: float | None = None

    @property
    def resumes_on_keyframe(self) -> bool:  # type: ignore[override]
        return self.gop is not None

    def interrupt(self, keyframe: bool = True) -> None:
        self._to_key = self._to_key or (keyframe and self.gop is not None)

    def audio_only(self) -> None:
        self._sound_only = True

    async def _spawn(self, children: Children) -> None:
        self.spawned_at = now()

    async def _fetch(self) -> tuple[float, float] | None:
        if self.first_read_at is None:
            self.first_read_at = now()
        while True:
            while self._left == 0:
                step = next(self._steps, End(0))
                if isinstance(step, Units):
                    self._left, self._duration = step.n, step.duration
                elif isinstance(step, Wait):
                    await asyncio.sleep(step.seconds)
                else:
                    self.rc, self.eof_at = step.rc, now()
                    return None
            self._left -= 1
            source, self._source = self._source, self._source + self._duration
            index, self._index = self._index, self._index + 1
            if self._to_key and self.gop is not None and index % self.gop:
                self.dropped += 1  # not a keyframe: undecodable after other video
                continue
            self._to_key = False
            return source, self._duration

    def _place(self, payload: object) -> Unit:
        assert isinstance(payload, tuple)
        assert self.offset is not None, "activate() first"
        _, duration = payload
        pts, self._placed = self.offset + self._placed, self._placed + duration
        label = self.label.encode()
        if self._sound_only:
            return Unit(pts, duration, b"", label)
        return Unit(pts, duration, label)

    async def returncode(self, timeout: float = 5.0) -> int | None:
        return self.rc

    async def close(self, children: Children) -> None:
        if self.closed_at is None:
            self.closed_at = now()
        await super().close(children)


@dataclass
class Spawn:
    source: str
    start: float
    feed: FakeFeed


class FakeFeeds:
    """``scripts[source]`` gives the script of each spawn of that source, from its start
    position (a resume after a crash asks again with the position reached). Without one, a
    source plays the rest of its duration and ends."""

    def __init__(
        self,
        scripts: dict[str, Callable[[float], Iterable[Step]]],
        gops: dict[str, int] | None = None,
    ) -> None:
        """``gops[source]``: that source resumes on keyframes every so many units (MPEG-TS
        video); the others resume anywhere (raw frames)."""
        self.scripts = scripts
        self.gops = gops or {}
        self.spawns: list[Spawn] = []
        self.slates: list[FakeFeed] = []

    def track(self, label: str, track: Track, start: float, remux: bool) -> Feed:
        script = self.scripts.get(track.item.source)
        steps = script(start) if script else seconds_of((track.info.duration or 60.0) - start)
        feed = FakeFeed(track.item.source, steps, start, self.gops.get(track.item.source))
        self.spawns.append(Spawn(track.item.source, start, feed))
        return feed

    def slate(self) -> Feed:
        feed = FakeFeed("slate", itertools.repeat(Units(1)))
        self.slates.append(feed)
        return feed

    def of(self, source: str) -> list[Spawn]:
        return [s for s in self.spawns if s.source == source]


# ---- tracks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Media:
    """What an item resolves to, after ``resolve_in`` seconds: ``info``, or ``error``."""

    duration: float | None = 3.0
    resolve_in: float = 0.0
    error: SourceError | None = None


def item(source: str, line: int) -> Item:
    return Item(key=source, source=source, kind="file", line=line)


class FakeTracks:
    def __init__(self, sources: Sequence[str], media: dict[str, Media], loop: bool) -> None:
        self._items = [item(s, n) for n, s in enumerate(sources, 1)]
        self.media = media
        self.rotation = Rotation(loop=loop)
        self._edited: list[Item] | None = None
        self.resolves: list[tuple[str, float]] = []
        """(source, virtual time) of every resolve started."""

    @property
    def items(self) -> Sequence[Item]:
        return self._items

    def next(self) -> Item | None:
        return self.rotation.next(self._items)

    def rewind(self, item: Item) -> None:
        self.rotation.rewind(item)

    def edit(self, sources: Sequence[str]) -> None:
        """The operator saves a new playlist; the engine sees it at its next reload check."""
        self._edited = [item(s, n) for n, s in enumerate(sources, 1)]

    def reload_if_changed(self) -> bool:
        if self._edited is None:
            return False
        self._items, self._edited = self._edited, None
        return True

    async def resolve(self, item: Item) -> Track | Expansion:
        self.resolves.append((item.source, now()))
        media = self.media.get(item.source, Media())
        await asyncio.sleep(media.resolve_in)
        if media.error is not None:
            raise media.error
        info = MediaInfo(media.duration, "h264", Q.width, Q.height, Q.fps, "yuv420p", "aac")
        return Track(item, item.source, info)

    async def plan_remux(self, track: Track) -> tuple[Track, bool]:
        return track, True


# ---- output and events -----------------------------------------------------------------------


@dataclass
class Written:
    at: float
    unit: Unit

    @property
    def label(self) -> str:
        return (self.unit.data or self.unit.audio).decode()

    @property
    def picture(self) -> bool:
        """The unit carries a picture (not sound alone)."""
        return bool(self.unit.data)


@dataclass
class FakeOutput:
    recipe: Recipe = "ts"
    reports_flowing = False
    name: str = "fake"
    written: list[Written] = field(default_factory=list)
    opened: bool = False
    closed: bool = False

    async def open(self) -> None:
        self.opened = True

    async def write(self, unit: Unit) -> None:
        self.written.append(Written(now(), unit))

    async def close(self) -> None:
        self.closed = True

    def runs(self) -> list[str]:
        """Labels in the order written, runs collapsed: ['a', 'slate', 'b']."""
        return [label for label, _ in itertools.groupby(w.label for w in self.written)]

    def of(self, label: str) -> list[Written]:
        return [w for w in self.written if w.label == label]


class Events(NullEvents):
    def __init__(self) -> None:
        self.started: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.restarts = 0
        self.states: list[tuple[float, str, str]] = []

    def track_started(self, title: str, prepare_seconds: float, gap_seconds: float | None) -> None:
        self.started.append(title)

    def track_failed(self, reason: str, detail: str = "") -> None:
        self.failed.append((reason, detail))

    def ffmpeg_restarted(self) -> None:
        self.restarts += 1

    def state(self, state: str, detail: str = "") -> None:
        self.states.append((now(), state, detail))


# ---- the rig ---------------------------------------------------------------------------------


class Rig:
    """One engine on fakes: ``sources`` in the playlist, what they resolve to (``media``, by
    default 3 s files), how their feeds play (``scripts``, by default their duration) and which
    resume only on keyframes (``gops``)."""

    def __init__(
        self,
        sources: Sequence[str],
        media: dict[str, Media] | None = None,
        scripts: dict[str, Callable[[float], Iterable[Step]]] | None = None,
        loop: bool = False,
        gops: dict[str, int] | None = None,
        **options: Any,
    ) -> None:
        self.tracks = FakeTracks(sources, media or {}, loop)
        self.feeds = FakeFeeds(scripts or {}, gops)
        self.output = FakeOutput()
        self.events = Events()
        self.engine = Engine(
            self.tracks,
            self.output,
            self.feeds,
            Children(),
            EngineOptions(Q, **options),
            self.events,
        )
        self.stop = asyncio.Event()

    async def run(self, *also: Coroutine[Any, Any, None], limit: float = 600.0) -> ExitCode:
        """Run the engine (``also`` beside it) for at most ``limit`` virtual seconds."""
        helpers = [asyncio.create_task(c) for c in also]
        try:
            return await asyncio.wait_for(self.engine.run(self.stop), limit)
        finally:
            for task in helpers:
                task.cancel()

    async def stop_when(self, condition: Callable[[], bool], every: float = 0.1) -> None:
        while not condition():
            await asyncio.sleep(every)
        self.stop.set()
