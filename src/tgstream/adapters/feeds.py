"""Feeds: one running ffmpeg each, yielding units already placed on the output timeline.

A feed is spawned ahead of time and left blocked on its pipe (bounded buffers, so a waiting
feed costs almost nothing). :meth:`Feed.activate` places it at an output time; from then on
:meth:`Feed.read` returns units whose ``pts`` continue the broadcast without a jump.

- :class:`TsFeed` reads MPEG-TS, cuts it into access units and rebases their timestamps
  (:mod:`tgstream.adapters.mpegts`).
- :class:`RawFeed` reads I420 frames and s16le PCM from two pipes with one reader each: ffmpeg
  writes the two pipes in file-interleave order, and a single sequential reader would deadlock
  as soon as one pipe fills while it waits on the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from opskit.procs import Children
from tgstream.adapters.mpegts import TS_CLOCK, TsRebaser, TsTimeline
from tgstream.config import Quality

__all__ = ["Unit", "Feed", "TsFeed", "RawFeed"]

log = logging.getLogger(__name__)

_TS_READ: Final = 188 * 348  # ~64 KiB
_TS_QUEUE_BYTES: Final = 128 << 10
"""Read-ahead of a TS feed (asyncio pauses the pipe at twice this): about a second of video."""
_AUDIO_QUEUE_SECONDS: Final = 8.0
_VIDEO_QUEUE_FRAMES: Final = 8
_RAW_PIPE_BYTES: Final = 1 << 20  # the default /proc/sys/fs/pipe-max-size


@dataclass(frozen=True, slots=True)
class Unit:
    """``pts``: output-timeline seconds at which this unit is due (for MPEG-TS, the decode
    timestamp of its frame); ``data``: what the sink writes.

    For raw feeds ``data`` is one I420 frame (``b""`` for audio-only) and ``audio`` the PCM of
    the same 1/fps tick.
    """

    pts: float
    duration: float
    data: bytes
    audio: bytes = b""


class Feed:
    """Common life cycle: spawn, activate, read, close; see the module docstring."""

    def __init__(self, label: str, argv: Sequence[str], start: float = 0.0) -> None:
        self.label = label
        self.argv = list(argv)
        self.start = start
        """Source position (seconds) the ffmpeg was started at; resume uses it."""
        self.proc: asyncio.subprocess.Process | None = None
        self.offset: float | None = None
        self.end: float | None = None
        """Output time just after the last unit read."""
        self.first_pts: float | None = None
        self._stderr: deque[str] = deque(maxlen=8)
        self._tasks: list[asyncio.Task[None]] = []
        self._fetching: asyncio.Task[object | None] | None = None

    @property
    def position(self) -> float:
        """Source seconds played so far (for resuming after a crash)."""
        if self.end is None or self.offset is None:
            return self.start
        return self.start + max(0.0, self.end - self.offset)

    @property
    def stderr_tail(self) -> str:
        return " | ".join(self._stderr)

    async def spawn(self, children: Children) -> None:
        """Start the ffmpeg. Cancellation-safe: a cancelled spawn still finishes (it takes
        milliseconds), then closes what it made, so no process, pipe or transport leaks."""
        inner = asyncio.ensure_future(self._spawn(children))
        try:
            await asyncio.shield(inner)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await inner
            await self.close(children)
            raise

    async def _spawn(self, children: Children) -> None:
        raise NotImplementedError

    def activate(self, offset: float) -> None:
        """Place the feed's next unit at output time ``offset``."""
        self.offset = offset

    def shift(self, delta: float) -> None:
        """Move the rest of the feed later by ``delta`` seconds (after a slate filled a gap)."""
        assert self.offset is not None
        self.offset += delta

    def interrupt(self) -> None:
        """The slate is about to cover a gap inside this feed: continue it, afterwards, where a
        decoder can start again (for MPEG-TS, its next keyframe). Raw frames need nothing."""

    @property
    def splice_gap(self) -> float:
        """Seconds of output timeline left uncovered where this feed was last spliced in."""
        return 0.0

    def pending(self) -> asyncio.Task[object | None]:
        """The in-flight fetch of the next payload. Never cancelled: waiting on it with a
        timeout and coming back later loses no data."""
        if self._fetching is None:
            self._fetching = asyncio.create_task(self._fetch(), name=f"fetch:{self.label}")
        return self._fetching

    def take(self) -> Unit | None:
        """The fetched payload placed on the timeline (``None`` at end of stream)."""
        task, self._fetching = self._fetching, None
        assert task is not None
        assert task.done()
        payload = task.result()
        if payload is None:
            return None
        unit = self._place(payload)
        if not unit.data and not unit.audio:
            return unit  # held back (a TS source not anchored yet): nothing placed so far
        if self.first_pts is None:
            self.first_pts = unit.pts
        self.end = max(self.end or 0.0, unit.pts + unit.duration)
        return unit

    async def _fetch(self) -> object | None:
        raise NotImplementedError

    def _place(self, payload: object) -> Unit:
        raise NotImplementedError

    async def returncode(self, timeout: float = 5.0) -> int | None:
        if self.proc is None:
            return None
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self.proc.wait(), timeout)
        return None

    async def close(self, children: Children) -> None:
        if self._fetching is not None:
            self._tasks.append(self._fetching)  # type: ignore[arg-type]
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.proc is not None:
            await children.stop(self.proc, grace=0)

    def _watch_stderr(self, stream: asyncio.StreamReader) -> None:
        async def pump() -> None:
            while line := await stream.readline():
                text = line.decode(errors="replace").strip()
                if text:
                    self._stderr.append(text)
                    log.debug("ffmpeg[%s]: %s", self.label, text)

        self._tasks.append(asyncio.create_task(pump(), name=f"stderr:{self.label}"))


class TsFeed(Feed):
    """MPEG-TS from one ffmpeg, handed out one access unit (one video or audio frame) at a
    time, each due at its own DTS: content of any bitrate is paced frame by frame."""

    def __init__(
        self,
        label: str,
        argv: Sequence[str],
        timeline: TsTimeline,
        frame: float,
        start: float = 0.0,
        streams: int = 2,
        on_hole: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(label, argv, start)
        self._rebaser = TsRebaser(0.0, timeline, streams, frame)
        self._on_hole = on_hole
        """Called with the seconds of each hole cut out of the source (see TsRebaser)."""

    async def _spawn(self, children: Children) -> None:
        self.proc = await children.spawn(
            self.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_TS_QUEUE_BYTES,
        )
        assert self.proc.stderr is not None
        self._watch_stderr(self.proc.stderr)

    def activate(self, offset: float) -> None:
        super().activate(offset)
        self._rebaser.offset = offset

    def interrupt(self) -> None:
        self._rebaser.resplice()

    @property
    def splice_gap(self) -> float:
        return self._rebaser.gap

    def pending(self) -> asyncio.Task[object | None]:
        """Done as soon as a unit can be taken: at once while units of the last read remain,
        else once reads have brought a whole unit (a keyframe, when splicing) or the end."""
        if self._fetching is None:
            if self._rebaser.ready() or self._rebaser.eof:
                done: asyncio.Future[object | None] = asyncio.get_running_loop().create_future()
                done.set_result(None)
                return done  # type: ignore[return-value]
            self._fetching = asyncio.create_task(self._fetch(), name=f"fetch:{self.label}")
        return self._fetching

    async def _fetch(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        while not self._rebaser.ready() and not self._rebaser.eof:
            self._rebaser.push(await self.proc.stdout.read(_TS_READ))
            self._report_holes()

    def _report_holes(self) -> None:
        holes = self._rebaser.holes
        for at, skipped in holes:
            log.warning(
                "%s: the source skipped %.2fs of its timeline at %.1fs (a live stream read "
                "late, or a damaged file); cut out so the picture does not freeze",
                self.label,
                skipped,
                self.start + at,
            )
            if self._on_hole is not None:
                self._on_hole(skipped)
        holes.clear()

    def take(self) -> Unit | None:
        if self._fetching is not None:
            task, self._fetching = self._fetching, None
            assert task.done()
            task.result()  # a failed read raises here
        assert self.offset is not None, "activate() first"
        ts = self._rebaser.pop()
        if ts is None:  # the end of the source, or nothing left to place from this read
            return None if self._rebaser.eof else Unit(self.end or self.offset, 0.0, b"")
        stamp = ts.stamp
        if stamp is None:  # packets without a PES (PSI only): due with what came before
            due = self.end if self.end is not None else self.offset
            unit = Unit(due, 0.0, bytes(ts.data))
        else:
            unit = Unit(stamp / TS_CLOCK, ts.duration / TS_CLOCK, bytes(ts.data))
        if self.first_pts is None:
            self.first_pts = unit.pts
        self.end = max(self.end or 0.0, unit.pts + unit.duration)
        return unit


class RawFeed(Feed):
    def __init__(
        self, label: str, argv: Sequence[str], quality: Quality, start: float = 0.0
    ) -> None:
        super().__init__(label, argv, start)
        self._q = quality
        self._tick = 1.0 / quality.fps
        self._audio_bytes = quality.sample_rate * quality.channels * 2 // quality.fps
        self._frames: asyncio.Queue[bytes | None] = asyncio.Queue(_VIDEO_QUEUE_FRAMES)
        self._audio = bytearray()
        self._audio_eof = False
        self._audio_ready = asyncio.Condition()
        self._audio_cap = int(_AUDIO_QUEUE_SECONDS * quality.sample_rate * quality.channels * 2)
        self._n = 0
        self._transports: list[asyncio.ReadTransport] = []

    async def _spawn(self, children: Children) -> None:
        loop = asyncio.get_running_loop()
        vr, vw = os.pipe() if self._q.has_video else (-1, -1)
        ar, aw = os.pipe()
        if vw >= 0:  # a 720p frame is 1.4 MB: a 64 KiB pipe would cost ~22 wakeups per frame
            with contextlib.suppress(OSError):
                fcntl.fcntl(vw, fcntl.F_SETPIPE_SZ, _RAW_PIPE_BYTES)
        pass_fds = [fd for fd in (vw, aw) if fd >= 0]
        # ffmpeg's pipe:N takes any descriptor number: hand it ours, inherited as they are.
        slots = {"pipe:3": f"pipe:{vw}", "pipe:4": f"pipe:{aw}"}
        argv = [slots.get(arg, arg) for arg in self.argv]
        try:
            self.proc = await children.spawn(
                argv, pass_fds=pass_fds, stderr=asyncio.subprocess.PIPE
            )
        finally:
            for fd in pass_fds:
                os.close(fd)
        assert self.proc.stderr is not None
        self._watch_stderr(self.proc.stderr)
        if vr >= 0:
            video = await self._reader(loop, vr)
            self._tasks.append(asyncio.create_task(self._pump_video(video), name="raw-video"))
        audio = await self._reader(loop, ar)
        self._tasks.append(asyncio.create_task(self._pump_audio(audio), name="raw-audio"))

    async def _reader(self, loop: asyncio.AbstractEventLoop, fd: int) -> asyncio.StreamReader:
        reader = asyncio.StreamReader(limit=4 << 20)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
        )
        self._transports.append(transport)
        return reader

    async def close(self, children: Children) -> None:
        try:
            await super().close(children)
        finally:
            for transport in self._transports:
                transport.close()
            self._transports.clear()
            await asyncio.sleep(0)  # let the transports' close callbacks run: pipes are closed

    async def _pump_video(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                await self._frames.put(await reader.readexactly(self._q.frame_bytes))
        except asyncio.IncompleteReadError:
            await self._frames.put(None)

    async def _pump_audio(self, reader: asyncio.StreamReader) -> None:
        while True:
            async with self._audio_ready:
                await self._audio_ready.wait_for(lambda: len(self._audio) < self._audio_cap)
            data = await reader.read(65536)
            async with self._audio_ready:
                if not data:
                    self._audio_eof = True
                else:
                    self._audio += data
                self._audio_ready.notify_all()
            if not data:
                return

    async def _take_audio(self) -> bytes | None:
        async with self._audio_ready:
            await self._audio_ready.wait_for(
                lambda: len(self._audio) >= self._audio_bytes or self._audio_eof
            )
            if not self._audio and self._audio_eof:
                return None
            chunk = bytes(self._audio[: self._audio_bytes])
            del self._audio[: self._audio_bytes]
            self._audio_ready.notify_all()
        return chunk.ljust(self._audio_bytes, b"\0")

    async def _fetch(self) -> tuple[bytes, bytes] | None:
        if self._q.has_video:
            frame = await self._frames.get()
            if frame is None:
                return None
            return frame, await self._take_audio() or bytes(self._audio_bytes)
        audio = await self._take_audio()
        return None if audio is None else (b"", audio)

    def _place(self, payload: object) -> Unit:
        assert isinstance(payload, tuple)
        assert self.offset is not None, "activate() first"
        pts = self.offset + self._n * self._tick
        self._n += 1
        return Unit(pts, self._tick, payload[0], payload[1])
