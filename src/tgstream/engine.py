"""The play loop: one output, one clock, tracks spliced back to back, never dead air.

How a broadcast runs::

    catalog ──pick──▶ resolver (yt-dlp, ffprobe) ──▶ feed spawned, blocked on its pipe
                                                          │ (while the previous track plays)
    clock ◀── pacer: emit each unit at its output time ◀──┘
      │                 │ the current feed is late?  ──▶ slate units fill the gap
      ▼                 │ no unit for STALL_TIMEOUT   ──▶ track failed ("stall"), next one
    output (RTMP / HLS preview / Telegram) receives one continuous timeline

- **Resolve ahead**: track N+1 is resolved and its ffmpeg started while N plays (from N's
  first frame out), so a track change costs one read from a pipe. A live source is resolved
  ahead but spawned when due.
- **Clock**: output time ``t`` is due at ``t0 + t`` on the monotonic clock; units are written
  up to ``LEAD`` seconds early, never later than due unless the machine is overloaded. The
  broadcast's first ``LEAD`` seconds of MPEG-TS go out as fast as they are read (the probe of
  the output's ffmpeg).
- **Failures** are logged with their cause, counted, and skipped. When every item fails in a
  row, the slate plays through a backoff of 2, 4 ... 60 s before the next round.
- **Seams** (:mod:`tgstream.ports`): the tracks (``TrackSource``), the process spawner
  (``FeedFactory``), the output, the events; the clock is the event loop's, so the rules are
  unit-tested on fakes and a virtual-time loop (``tests/tgstream/unit/test_engine.py``).
- **Crash mid-track**: a source ffmpeg that dies (non-zero exit or signal) is restarted at the
  position reached, up to ``MAX_RESUMES`` times per track.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from opskit.lifecycle import sleep_or_stop
from opskit.procs import Children, ToolMissingError
from tgstream.adapters.feeds import Feed, Unit
from tgstream.adapters.resolver import Expansion
from tgstream.config import Quality
from tgstream.domain.playlist import Item
from tgstream.domain.track import Track
from tgstream.errors import ExitCode, FailureReason, SourceError, ToolError
from tgstream.ffargs import FfmpegArgs
from tgstream.ports import EngineEvents, FeedFactory, Output, TrackSource

__all__ = ["Engine", "EngineOptions", "NullEvents"]

log = logging.getLogger(__name__)

START_AT: Final = 1.0
"""Output time of the first unit; leaves room for B-frames and audio lead before it."""
FIRST_READ_ALLOWANCE: Final = 0.5
FIRST_TRACK_GRACE: Final = 3.0
"""How long start-up waits for the first track's first frame before showing the slate instead:
the broadcast opens on the first item, and the clock starts with its first frame."""
MAX_RESUMES: Final = 3
PLAYED_OK: Final = 2.0
"""Seconds a track must play before it clears the run of consecutive failures."""
_PLAIN_SLEEP: Final = 0.1
"""Waits up to this long before a unit are a bare ``asyncio.sleep``: cheaper per frame than
waiting on the stop event with a timeout (a task and a timer), and a stop waits at most this."""


def _loop_time() -> float:
    """The running event loop's clock: the one every ``asyncio`` wait is measured on."""
    return asyncio.get_running_loop().time()


class NullEvents:
    """Events sink that records nothing; subclass it to record only what you need."""

    def track_started(self, title: str, prepare_seconds: float, gap_seconds: float | None) -> None:
        pass

    def track_ready(self, title: str) -> None:
        pass

    def track_failed(self, reason: str, detail: str = "") -> None:
        pass

    def ffmpeg_restarted(self) -> None:
        pass

    def source_hole(self, seconds: float) -> None:
        pass

    def output_reconnected(self) -> None:
        pass

    def output_flowing(self, flowing: bool) -> None:
        pass

    def playlist_size(self, items: int) -> None:
        pass

    def state(self, state: str, detail: str = "") -> None:
        pass


@dataclass(frozen=True, slots=True)
class EngineOptions:
    quality: Quality
    ffargs: FfmpegArgs = field(default_factory=FfmpegArgs)
    stall_timeout: float = 10.0
    lead: float = 0.5
    """Seconds of output written ahead of real time (downstream buffer)."""
    low_water: float = 0.15
    """When less than this is buffered downstream and the feed has nothing, the slate plays."""
    max_backoff: float = 60.0
    hold_picture: float = 1.0
    """Seconds of a gap inside a track covered by the slate's sound alone, the picture holding
    on the track's last frame: the track then resumes on its next frame, where after the
    slate's picture it can resume only on its next keyframe (up to a GOP of it lost). A gap
    that lasts longer shows the slate's picture. 0: the picture at once."""
    reload_every: float = 1.0


@dataclass(slots=True)
class _Prepared:
    item: Item
    track: Track
    feed: Feed
    remux: bool
    resolved_in: float
    resumes: int = 0
    spawned: bool = True
    """False for a live source prepared ahead: its ffmpeg starts when the track is due."""


@dataclass(slots=True)
class _Failed:
    item: Item
    error: SourceError


@dataclass
class _Stats:
    tracks_started: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    slate_seconds: float = 0.0
    first_unit_at: float | None = None
    titles: list[str] = field(default_factory=list)


class Engine:
    """Seams (:mod:`tgstream.ports`): ``tracks`` says what plays next, ``feeds`` spawns the
    processes, ``output`` receives the broadcast. ``clock`` must be the clock the event loop's
    waits run on (the default); tests run the engine on a virtual-time loop."""

    def __init__(
        self,
        tracks: TrackSource,
        output: Output,
        feeds: FeedFactory,
        children: Children,
        options: EngineOptions,
        events: EngineEvents | None = None,
        clock: Callable[[], float] = _loop_time,
        resume: tuple[Item, float] | None = None,
    ) -> None:
        self.tracks = tracks
        self.output = output
        self.feeds = feeds
        self.children = children
        self.opt = options
        self.events: EngineEvents = events or NullEvents()
        self.clock = clock
        self.stats = _Stats()
        self.current: _Prepared | None = None
        self.cursor = START_AT
        """Output time just after the last unit written."""
        self._t0 = 0.0
        self._head_until = 0.0
        """Output time up to which units are written as soon as read (the first ``lead`` s)."""
        self._announce: Callable[[float | None], None] | None = None
        self._slate: Feed | None = None
        self._slate_spawn: asyncio.Task[Feed] | None = None
        self._stop = asyncio.Event()
        self._last_reload_check = 0.0
        self._upcoming: asyncio.Task[_Prepared | _Failed | None] | None = None
        self._resume_from = resume
        """Played first, from its position: the track a previous engine was stopped in."""
        self._resume_taken = False
        self.last_unit_at: float | None = None
        """Monotonic time of the latest unit written: the pipeline's pulse (watchdog)."""
        self.interrupted: tuple[Item, float] | None = None
        """The track playing when ``stop`` was set, and the position reached in it."""

    # ---- public -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> ExitCode:
        """Broadcast until ``stop`` is set (exit 0) or, with LOOP=0, the playlist has played."""
        self._stop = stop
        self.events.state("starting")
        self.events.playlist_size(len(self.tracks.items))
        await self.output.open()
        try:
            self._t0 = self.clock() - START_AT + FIRST_TRACK_GRACE
            # The slate is spawned once the first frame is out (or when it is needed first):
            # its start would compete with the first track's probes and ffmpeg.
            self._upcoming = self._prepare_soon()
            while not stop.is_set():
                assert self._upcoming is not None
                prepared = await self._await_with_slate(self._upcoming)
                if stop.is_set():
                    break
                if prepared is None:
                    log.info("playlist played once (LOOP=0); stopping")
                    return ExitCode.OK
                self._upcoming = None
                if isinstance(prepared, _Failed):
                    await self._back_off()
                    self._upcoming = self._prepare_soon()
                else:
                    await self._play(prepared)
            return ExitCode.OK
        finally:
            if self._upcoming is not None:
                await self._discard(self._upcoming)
            await self._shutdown()

    # ---- preparing the next track ------------------------------------------------------

    def _prepare_soon(self) -> asyncio.Task[_Prepared | _Failed | None]:
        return asyncio.create_task(self._prepare(), name="prepare-next")

    async def _prepare(self) -> _Prepared | _Failed | None:
        """Pick, resolve and spawn the next playable item. Failing items are skipped here,
        ahead of time; ``_Failed`` comes back only when every item failed in a row."""
        while True:
            picked = self._pick()
            if picked is None:
                return None
            item, start = picked
            began = self.clock()
            try:
                resolved = await self.tracks.resolve(item)
                if isinstance(resolved, Expansion):
                    continue  # the source recorded the playlist's items: pick again
                if resolved.info.live:
                    start = 0.0
                prepared = await self._spawn_track(item, resolved, began, start, ahead=True)
            except SourceError as exc:
                self._count_failure(item, exc)
                if self._everything_failed():
                    return _Failed(item, exc)
                continue
            except ToolMissingError as exc:
                raise ToolError(str(exc)) from None
            except asyncio.CancelledError:
                self._unpick(item)  # dropped while resolving: it comes next again
                raise
            self.events.track_ready(prepared.track.display)
            return prepared

    @property
    def resume_point(self) -> tuple[Item, float] | None:
        """Where a next engine should start: the track this one was stopped in, or the resume
        point it was given and never reached."""
        return self.interrupted or self._resume_from

    def _pick(self) -> tuple[Item, float] | None:
        """The next item and where to start it: the interrupted track first, when resuming."""
        if self._resume_from is not None and not self._resume_taken:
            self._resume_taken = True
            log.info("resuming %s at %.1fs", self._resume_from[0].display, self._resume_from[1])
            return self._resume_from
        item = self.tracks.next()
        return None if item is None else (item, 0.0)

    def _unpick(self, item: Item) -> None:
        """Undo :meth:`_pick` of an item that will not play now."""
        if self._resume_from is not None and item == self._resume_from[0]:
            self._resume_taken = False
        else:
            self.tracks.rewind(item)

    async def _spawn_track(
        self,
        item: Item,
        track: Track,
        began: float,
        start: float = 0.0,
        resumes: int = 0,
        ahead: bool = False,
    ) -> _Prepared:
        """Plan and spawn the track's feed. Prepared ``ahead``, a live source is resolved but
        not spawned: its ffmpeg would read the stream's first segments, block on the pipe, and
        find them expired when read, skipping ahead (holes in the picture)."""
        remux = False
        if self.output.recipe == "ts":
            track, remux = await self.tracks.plan_remux(track)
        feed = self.feeds.track(f"track:{item.line}", track, start, remux)
        deferred = ahead and track.info.live
        if not deferred:
            await feed.spawn(self.children)
        return _Prepared(item, track, feed, remux, self.clock() - began, resumes, not deferred)

    async def _discard(self, task: asyncio.Task[_Prepared | _Failed | None]) -> None:
        """Drop a prepared (or preparing) track; its item goes back into the rotation."""
        task.cancel()
        try:
            result = await task
        except asyncio.CancelledError:
            return
        except Exception as exc:  # the track was being dropped anyway; keep the cause visible
            log.warning("preparing the next track failed while dropping it: %s", exc)
            return
        if isinstance(result, _Prepared):
            await result.feed.close(self.children)
        if result is not None:
            self._unpick(result.item)

    # ---- playing ---------------------------------------------------------------------

    async def _play(self, p: _Prepared) -> None:
        """Play one track to its end, preparing the one after it meanwhile."""
        if not p.spawned:  # a live source: it starts reading now, when it is due
            try:
                await p.feed.spawn(self.children)
            except ToolMissingError as exc:
                raise ToolError(str(exc)) from None
            p.spawned = True
        feed = p.feed
        self._anchor()
        feed.activate(self.cursor)
        self.current = p
        if self._resume_from is not None and p.item == self._resume_from[0]:
            self._resume_from = None  # reached: from here on, interrupted says where we are
        self.stats.tracks_started += 1
        self.stats.titles.append(p.track.display)
        title, resolved_in = p.track.display, p.resolved_in
        self._announce = lambda gap: self.events.track_started(title, resolved_in, gap)
        self.events.state("streaming")
        log.info(
            "now playing: %s (%s, %s, resolved in %.2fs; playlist line %d%s)",
            p.track.display,
            "live" if p.track.info.live else f"{p.track.info.duration or 0:.1f}s",
            "remux" if p.remux else "transcode",
            p.resolved_in,
            p.item.line,
            "" if p.item.source == p.track.display else f": {p.item.source}",
        )
        # The next track is prepared once this one's first frame is out (_pump): its probes
        # and spawn do not compete with this track's start (at start-up, the first publish).
        try:
            while True:
                outcome = await self._pump(feed)
                if outcome == "stop":
                    self.interrupted = (p.item, p.feed.position)
                    await self._complete_sound(feed)
                    return
                if outcome == "eof":
                    rc = await feed.returncode()
                    if rc == 0 or rc is None:
                        break
                    reason = f"ffmpeg exited with code {rc}: {feed.stderr_tail or 'no message'}"
                else:
                    reason = f"no output for {self.opt.stall_timeout:.0f}s (stall)"
                resumed = await self._resume(p, reason, outcome)
                if resumed is None:
                    break
                p, feed = resumed, resumed.feed
                self.current = p
        finally:
            self._announce = None
            await feed.close(self.children)
            self.current = None
            if self._upcoming is None and not self._stop.is_set():
                self._upcoming = self._prepare_soon()  # it ended before its first frame

    async def _resume(self, p: _Prepared, reason: str, outcome: str) -> _Prepared | None:
        """Restart a crashed source near where it stopped; ``None`` when it is given up.

        A source that failed before its first unit is not resumed: that is not a crash
        mid-track but a track that cannot play, and retrying it at once would spin."""
        info = p.track.info
        position = p.feed.position
        near_end = info.duration is not None and position >= info.duration - 1.0
        if outcome == "eof" and near_end:
            return None
        if outcome == "stall" or p.resumes >= MAX_RESUMES or p.feed.first_pts is None:
            kind: FailureReason = "stall" if outcome == "stall" else "ffmpeg_exit"
            self._count_failure(p.item, SourceError(kind, f"{p.track.display}: {reason}"))
            return None
        log.warning(
            "%s: %s; resuming at %.1fs (restart %d of %d)",
            p.track.display,
            reason,
            position,
            p.resumes + 1,
            MAX_RESUMES,
        )
        self.events.ffmpeg_restarted()
        await p.feed.close(self.children)
        start = 0.0 if info.live else position
        try:
            new = await self._spawn_track(p.item, p.track, self.clock(), start, p.resumes + 1)
        except ToolMissingError as exc:
            raise ToolError(str(exc)) from None
        new.feed.activate(self.cursor)
        return new

    async def _pump(self, feed: Feed) -> str:
        """Emit the feed's units until it ends ('eof'), stalls ('stall') or we stop ('stop')."""
        last_unit_at = self.clock()
        while not self._stop.is_set():
            await self._maybe_reload()
            pending = feed.pending()
            starve_in = (self._t0 + self.cursor - self.opt.low_water) - self.clock()
            if not pending.done():
                await asyncio.wait({pending}, timeout=max(starve_in, 0.0))
            if not pending.done():
                filled = await self._fill_with_slate(pending, last_unit_at, feed)
                if not pending.done():
                    return "stop" if self._stop.is_set() else "stall"
                if filled:
                    # Continue after the slate: from the feed's last unit, or, when the slate
                    # came before its first one, from where it was activated.
                    resume_at = feed.end if feed.end is not None else feed.offset
                    assert resume_at is not None
                    feed.shift(self.cursor - resume_at)
            unit = feed.take()
            if unit is None:
                return "eof"
            last_unit_at = self.clock()
            first = self.stats.first_unit_at is None
            late = await self._emit(unit)
            if self._upcoming is None:
                self._upcoming = self._prepare_soon()
            if self._slate is None and self._slate_spawn is None:
                self._respawn_slate()
            if self._announce is not None and feed.first_pts is not None:
                # The track has started when its first frame is out. Its gap: the output time
                # left uncovered before it (the step in timestamps at the splice) plus how long
                # the output ran dry on the wall clock. None for the broadcast's first track.
                self._announce(None if first else late + feed.splice_gap)
                self._announce = None
            if feed.first_pts is not None and unit.pts - feed.first_pts >= PLAYED_OK:
                self.stats.consecutive_failures = 0
        return "stop"

    def _anchor(self) -> None:
        """Before the first unit: the first read gets until the start-up grace ends, and at
        least a moment, before it counts as starving (``_emit`` starts the clock on the first
        frame written, so it goes out as soon as it is read)."""
        if self.stats.first_unit_at is None:
            read_by = self.clock() - self.cursor + self.opt.low_water + FIRST_READ_ALLOWANCE
            self._t0 = max(self._t0, read_by)

    async def _emit(self, unit: Unit) -> float:
        """Write ``unit`` when it is due, ``lead`` seconds before its output time, never later
        unless the machine is behind. Returns how late it was past its output time (>0: the
        output ran dry for that long)."""
        if not unit.data and not unit.audio:
            return 0.0
        if self.stats.first_unit_at is None:  # the clock starts with the first frame
            self._t0 = self.clock() - unit.pts + self.opt.lead
            # An MPEG-TS output feeds an ffmpeg that probes; raw frames go to a player as is.
            head = self.opt.lead if self.output.recipe == "ts" else 0.0
            self._head_until = unit.pts + head
        due = self._t0 + unit.pts - self.opt.lead
        wait = due - self.clock()
        # The broadcast's first ``lead`` seconds go out as they are read, not in real time
        # (MPEG-TS outputs): the output's ffmpeg ends its probe and opens the destination
        # without waiting for them (from then on, units are written ``lead`` early).
        if unit.pts < self._head_until:
            wait = 0.0
        if wait > _PLAIN_SLEEP:
            await sleep_or_stop(self._stop, wait)
        elif wait > 0:  # the usual frame's wait: a bare timer (no task); stop is seen after it
            await asyncio.sleep(wait)
        await self.output.write(unit)
        self.last_unit_at = self.clock()
        if self.stats.first_unit_at is None:
            self.stats.first_unit_at = self.clock()
            if not self.output.reports_flowing:  # else it says so when it is
                log.info("first frame written to the %s output", self.output.name)
        self.cursor = max(self.cursor, unit.pts + unit.duration)
        return max(0.0, self.last_unit_at - self._t0 - unit.pts)

    async def _complete_sound(self, feed: Feed, within: float = 0.5) -> None:
        """Before the output splices to something else or stops after ``feed``: write its
        sound up to where its picture ends (a muxer interleaves the sound of a frame after the
        frame, so cutting after a picture leaves its sound out: at each slate restart of the
        backoff, a 45 ms hole in the sound). Only units already read, or read within
        ``within`` seconds; the picture is not extended."""
        if not feed.sound_behind:
            return
        feed.audio_only()
        deadline = self.clock() + within
        while feed.sound_behind:
            fetch = feed.pending()
            if not fetch.done():
                await asyncio.wait({fetch}, timeout=max(deadline - self.clock(), 0.0))
                if not fetch.done():
                    return
            unit = feed.take()
            if unit is None:
                return
            if unit.data or unit.audio:
                await self._emit(unit)

    # ---- the slate -------------------------------------------------------------------

    def _respawn_slate(self) -> None:
        async def spawn() -> Feed:
            feed = self.feeds.slate()
            await feed.spawn(self.children)
            return feed

        self._slate_spawn = asyncio.create_task(spawn(), name="slate-spawn")

    async def _fill_with_slate(
        self, waiting_for: asyncio.Future[Any], since: float, feed: Feed | None = None
    ) -> bool:
        """Play the slate until ``waiting_for`` completes, the stall timeout passes, or stop.
        The slate goes out whole frames only; ``feed``, the feed it interrupts, continues after
        it: on its next frame after the slate's sound alone, which covers the first
        ``hold_picture`` seconds of a gap inside a track that resumes on keyframes (its picture
        holds meanwhile); on its next keyframe once the slate's picture went out.

        Returns whether any slate unit was written.
        """
        hold = (
            feed is not None
            and feed.first_pts is not None
            and feed.resumes_on_keyframe
            and self.opt.hold_picture > 0
        )
        wrote = False
        while True:
            wrote_now, more = await self._slate_pass(waiting_for, since, feed, hold)
            wrote = wrote or wrote_now
            if not more:
                return wrote
            hold = False  # the gap outlasted the held picture: show the slate's

    async def _slate_pass(
        self, waiting_for: asyncio.Future[Any], since: float, feed: Feed | None, sound_only: bool
    ) -> tuple[bool, bool]:
        """One slate, whole or (``sound_only``) for its sound until ``hold_picture`` seconds
        of it went out. Returns whether it wrote a unit, and whether the gap goes on with the
        slate's picture (a fresh slate, which opens on a keyframe)."""
        if self._slate is None:
            if self._slate_spawn is None:
                self._respawn_slate()
            assert self._slate_spawn is not None
            self._slate = await self._slate_spawn
            self._anchor()
            self._slate.activate(self.cursor)
        slate = self._slate
        if sound_only:
            slate.audio_only()
        wrote = False
        sound = 0.0
        began = self.clock()
        log.info(
            "next media not ready; %s",
            "holding the picture over the slate's sound" if sound_only else "showing the slate",
        )
        self.events.state("slate")
        try:
            while not waiting_for.done() and not self._stop.is_set():
                if self.clock() - since > self.opt.stall_timeout:
                    break
                if sound_only and sound >= self.opt.hold_picture:
                    return wrote, True
                fetch = slate.pending()
                await asyncio.wait({fetch, waiting_for}, return_when=asyncio.FIRST_COMPLETED)
                if waiting_for.done():
                    break
                if not fetch.done():
                    continue
                unit = slate.take()
                if unit is None:
                    break
                if not unit.data and not unit.audio:
                    continue  # nothing placed from this read
                if not wrote and feed is not None:
                    feed.interrupt(keyframe=not sound_only)
                await self._emit(unit)
                sound += unit.duration
                wrote = True
            if wrote:
                await self._complete_sound(slate)
        finally:
            self.stats.slate_seconds += self.clock() - began
            # A used slate is replaced, so the next gap starts on a fresh keyframe.
            await slate.close(self.children)
            self._slate = None
            self._respawn_slate()
            if waiting_for.done():
                self.events.state("streaming")
        return wrote, False

    async def _await_with_slate(
        self, task: asyncio.Task[_Prepared | _Failed | None]
    ) -> _Prepared | _Failed | None:
        """Wait for the next track; play the slate while it is not ready in time."""
        starve_in = (self._t0 + self.cursor - self.opt.low_water) - self.clock()
        await asyncio.wait({task}, timeout=max(starve_in, 0.0))
        while not task.done() and not self._stop.is_set():
            await self._fill_with_slate(task, self.clock())
        if self._stop.is_set() and not task.done():
            return None
        return task.result()

    # ---- failures ---------------------------------------------------------------------

    def _count_failure(self, item: Item, error: SourceError) -> None:
        self.stats.failures += 1
        self.stats.consecutive_failures += 1
        self.events.track_failed(error.reason, str(error))
        log.error(
            "skipping %s (playlist line %d): %s [%s]", item.display, item.line, error, error.reason
        )

    def _everything_failed(self) -> bool:
        """A whole round failed in a row: every item once since the last backoff (each round
        tries every item before the next backoff, so the backoff grows once per round)."""
        n = max(len(self.tracks.items), 1)
        return self.stats.consecutive_failures >= n and self.stats.consecutive_failures % n == 0

    async def _back_off(self) -> None:
        """Every item failed in a row: slate through 2, 4 ... 60 s before the next round."""
        rounds = self.stats.consecutive_failures // max(len(self.tracks.items), 1)
        backoff = min(2.0**rounds, self.opt.max_backoff)
        log.error(
            "every playlist item failed in a row; showing the slate and retrying in "
            "%.0fs; fix the entries above (tgstream check lists them)",
            backoff,
        )
        self.events.state("all_failed", f"{self.stats.consecutive_failures} failures in a row")
        sleeper = asyncio.create_task(asyncio.sleep(backoff))
        try:
            while not sleeper.done() and not self._stop.is_set():
                await self._fill_with_slate(sleeper, self.clock())
        finally:
            sleeper.cancel()

    async def _maybe_reload(self) -> None:
        """An edited playlist takes effect at the next track: re-pick what comes next."""
        now = self.clock()
        if now - self._last_reload_check < self.opt.reload_every:
            return
        self._last_reload_check = now
        if not self.tracks.reload_if_changed():
            return
        self.events.playlist_size(len(self.tracks.items))
        if self._upcoming is not None:
            await self._discard(self._upcoming)
            self._upcoming = self._prepare_soon()

    async def _shutdown(self) -> None:
        self.events.state("stopping")
        if self._slate is not None:
            await self._slate.close(self.children)
        if self._slate_spawn is not None:
            self._slate_spawn.cancel()
            with contextlib.suppress(BaseException):
                feed = await self._slate_spawn
                await feed.close(self.children)
        await self.output.close()
        await self.children.close()
