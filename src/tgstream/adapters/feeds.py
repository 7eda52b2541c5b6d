"""Feeds: one running ffmpeg each, yielding units already placed on the output timeline.

A feed is spawned ahead of time and left blocked on its pipe (bounded buffers, so a waiting
feed costs almost nothing). :meth:`Feed.activate` places it at an output time; from then on
:meth:`Feed.read` returns units whose ``pts`` continue the broadcast without a jump.

- :class:`TsFeed` reads MPEG-TS, cuts it into access units and rebases their timestamps
  (:mod:`tgstream.adapters.mpegts`).
- :class:`RawFeed` reads I420 frames and s16le PCM from two pipes with one reader each: ffmpeg
  writes the two pipes in file-interleave order, and a single sequential reader would deadlock
  as soon as one pipe fills while it waits on the other. The video reader is a thread that
  reads each frame straight into its own ``bytes`` (no copy in Python), a few frames at a
  time; see :class:`_FrameReader`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import threading
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
_VIDEO_QUEUE_FRAMES: Final = 12
_VIDEO_BURST_FRAMES: Final = 4
"""The video reader waits until this many frames were taken, then reads as many back to back:
its ffmpeg decodes a burst per wakeup instead of one frame each (between
``_VIDEO_QUEUE_FRAMES - _VIDEO_BURST_FRAMES`` and ``_VIDEO_QUEUE_FRAMES`` frames stay ahead)."""
_RAW_PIPE_BYTES: Final = 1 << 20  # the default /proc/sys/fs/pipe-max-size
_RAW_PIPE_MAX_BYTES: Final = 8 << 20
_Y4M_BLOCK: Final = 4096
_Y4M_LINE: Final = 256
"""Longest YUV4MPEG2 header line read (ffmpeg writes about 60 bytes, and 6 per frame)."""


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
        self._fetching: asyncio.Future[object | None] | None = None

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

    resumes_on_keyframe = False
    """After the slate's picture, this feed continues only on its next keyframe (MPEG-TS with
    video): a gap inside it is better covered by the slate's sound alone while it is short."""

    def interrupt(self, keyframe: bool = True) -> None:
        """The slate is about to cover a gap inside this feed: continue it, afterwards, where a
        decoder can start again: with ``keyframe`` (the slate's picture went out), for MPEG-TS,
        its next keyframe; without (only its sound), its next unit. Raw frames need nothing."""

    @property
    def sound_behind(self) -> bool:
        """Its sound written so far ends before its picture (by more than half an audio
        frame): :meth:`audio_only` units complete it before the output splices or stops."""
        return False

    def audio_only(self) -> None:
        """From now on hand out sound only (the slate covering a short gap inside a track whose
        picture holds on its last frame). Only feeds that ``resumes_on_keyframe`` need it."""
        raise NotImplementedError(f"{type(self).__name__} has no sound-only mode")

    @property
    def splice_gap(self) -> float:
        """Seconds of output timeline left uncovered where this feed was last spliced in."""
        return 0.0

    def pending(self) -> asyncio.Future[object | None]:
        """The in-flight fetch of the next payload. Never cancelled: waiting on it with a
        timeout and coming back later loses no data. Already done when the payload was read
        ahead (:meth:`_ready`): no task, no loop iteration for that unit."""
        if self._fetching is None:
            payload = self._ready()
            if payload is not None:
                done: asyncio.Future[object | None] = asyncio.get_running_loop().create_future()
                done.set_result(payload)
                self._fetching = done
            else:
                self._fetching = asyncio.create_task(self._fetch(), name=f"fetch:{self.label}")
        return self._fetching

    def _ready(self) -> object | None:
        """The next payload when it can be had without waiting, else ``None``."""
        return None

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

    @property
    def resumes_on_keyframe(self) -> bool:  # type: ignore[override]
        return self._rebaser.streams > 1

    def interrupt(self, keyframe: bool = True) -> None:
        self._rebaser.resplice(keyframe)

    def audio_only(self) -> None:
        self._rebaser.audio_only = True

    @property
    def sound_behind(self) -> bool:
        return self._rebaser.timeline.sound_behind()

    @property
    def splice_gap(self) -> float:
        return self._rebaser.gap

    def pending(self) -> asyncio.Future[object | None]:
        """Done as soon as a unit can be taken: at once while units of the last read remain,
        else once reads have brought a whole unit (a keyframe, when splicing) or the end."""
        if self._fetching is None:
            if self._rebaser.ready() or self._rebaser.eof:
                done: asyncio.Future[object | None] = asyncio.get_running_loop().create_future()
                done.set_result(None)
                return done
            self._fetching = asyncio.create_task(self._fetch(), name=f"fetch:{self.label}")
        return self._fetching

    async def _fetch(self) -> object | None:
        """Reads until a unit can be taken; the units stay in the rebaser (returns None)."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        while not self._rebaser.ready() and not self._rebaser.eof:
            self._rebaser.push(await self.proc.stdout.read(_TS_READ))
            self._report_holes()
        return None

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
    """I420 frames and s16le PCM, one reader per pipe; see the module docstring.

    Video is read by a :class:`_FrameReader` thread, each frame straight into its own ``bytes``
    (what py-tgcalls' ``send_frame`` takes); audio by a plain protocol on the event loop (192
    KB/s: a file's in 32 KiB writes, a live source's in 4 KiB packets).
    """

    def __init__(
        self, label: str, argv: Sequence[str], quality: Quality, start: float = 0.0
    ) -> None:
        super().__init__(label, argv, start)
        self._q = quality
        self._tick = 1.0 / quality.fps
        self._audio_bytes = quality.sample_rate * quality.channels * 2 // quality.fps
        self._video: _FrameReader | None = None
        self._audio = bytearray()
        self._audio_eof = False
        self._audio_waiter: asyncio.Future[None] | None = None
        self._audio_cap = int(_AUDIO_QUEUE_SECONDS * quality.sample_rate * quality.channels * 2)
        self._audio_transport: asyncio.ReadTransport | None = None
        self._audio_paused = False
        self._n = 0

    @property
    def frames_ahead(self) -> int:
        """Frames read from the pipe and not taken yet (at most ``_VIDEO_QUEUE_FRAMES``)."""
        return 0 if self._video is None else len(self._video.frames)

    async def _spawn(self, children: Children) -> None:
        loop = asyncio.get_running_loop()
        vr, vw = os.pipe() if self._q.has_video else (-1, -1)
        ar, aw = os.pipe()
        if vw >= 0:
            _grow_pipe(vw, self._q.frame_bytes)
        pass_fds = [fd for fd in (vw, aw) if fd >= 0]
        # ffmpeg's pipe:N takes any descriptor number: hand it ours, inherited as they are.
        slots = {"pipe:3": f"pipe:{vw}", "pipe:4": f"pipe:{aw}"}
        argv = [slots.get(arg, arg) for arg in self.argv]
        try:
            self.proc = await children.spawn(
                argv, pass_fds=pass_fds, stderr=asyncio.subprocess.PIPE
            )
        except BaseException:
            for fd in (vr, ar):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            for fd in pass_fds:
                os.close(fd)
        assert self.proc.stderr is not None
        self._watch_stderr(self.proc.stderr)
        if vr >= 0:
            self._video = _FrameReader(
                f"raw-video:{self.label}",
                vr,
                (self._q.width, self._q.height),
                _VIDEO_QUEUE_FRAMES,
                loop,
                _VIDEO_BURST_FRAMES,
            )
        self._audio_transport, _ = await loop.connect_read_pipe(
            lambda: _PcmProtocol(self), os.fdopen(ar, "rb", buffering=0)
        )

    async def close(self, children: Children) -> None:
        try:
            await super().close(children)  # ffmpeg is gone: the reader thread sees the end
        finally:
            if self._video is not None:
                await self._video.stop()
            if self._audio_transport is not None:
                self._audio_transport.close()
                self._audio_transport = None
            await asyncio.sleep(0)  # let the transport's close callbacks run: pipes are closed

    # -- audio: called by _PcmProtocol ---------------------------------------------------

    def _pcm_received(self, data: bytes) -> None:
        self._audio += data
        if len(self._audio) >= self._audio_cap and self._audio_transport is not None:
            self._audio_transport.pause_reading()
            self._audio_paused = True
        if len(self._audio) >= self._audio_bytes:
            _wake(self._audio_waiter)

    def _pcm_ended(self) -> None:
        self._audio_eof = True
        _wake(self._audio_waiter)

    async def _take_audio(self) -> bytes | None:
        n = self._audio_bytes
        while len(self._audio) < n and not self._audio_eof:
            if self._video is not None:
                self._video.kick()  # its ffmpeg may be blocked on a full video pipe
            self._audio_waiter = asyncio.get_running_loop().create_future()
            await self._audio_waiter
        if not self._audio:
            return None
        return self._pop_audio()

    def _pop_audio(self) -> bytes:
        """One tick of PCM from what was received (padded with silence at the end)."""
        n = self._audio_bytes
        with memoryview(self._audio) as view:
            chunk = view[:n].tobytes()
        del self._audio[:n]  # O(1): a bytearray drops its head by moving its start
        if self._audio_paused and len(self._audio) < self._audio_cap:
            self._audio_paused = False
            if self._audio_transport is not None:
                self._audio_transport.resume_reading()
        return chunk if len(chunk) == n else chunk.ljust(n, b"\0")

    def _ready(self) -> tuple[bytes, bytes] | None:
        """A frame read ahead and its tick of PCM, when both are here (steady state)."""
        if len(self._audio) < self._audio_bytes:
            return None
        if self._q.has_video:
            assert self._video is not None
            frame = self._video.poll()
            if frame is None:
                return None
            return frame, self._pop_audio()
        return b"", self._pop_audio()

    async def _fetch(self) -> tuple[bytes, bytes] | None:
        if self._q.has_video:
            assert self._video is not None
            frame = await self._video.next()
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


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _grow_pipe(fd: int, frame_bytes: int) -> int:
    """Make the pipe hold two frames when this process may (root may pass pipe-max-size), else
    as much as it may: a whole frame waiting in the pipe is then read in one call. Returns the
    size set (the default 64 KiB when even 1 MiB is refused)."""
    size = _RAW_PIPE_BYTES
    while size < 2 * frame_bytes and size < _RAW_PIPE_MAX_BYTES:
        size *= 2
    while size >= _RAW_PIPE_BYTES:
        try:
            return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
        except OSError:
            size //= 2
    return 1 << 16


class _PcmProtocol(asyncio.Protocol):
    def __init__(self, feed: RawFeed) -> None:
        self._feed = feed

    def data_received(self, data: bytes) -> None:
        self._feed._pcm_received(data)

    def eof_received(self) -> bool:
        self._feed._pcm_ended()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._feed._pcm_ended()


class _FrameReader:
    """A thread that reads whole frames of a YUV4MPEG2 stream, at most ``depth`` ahead.

    YUV4MPEG2 (ffmpeg's ``yuv4mpegpipe``) rather than bare ``rawvideo``: its muxer writes the
    decoded planes as they are, where the rawvideo encoder first copies each frame into a
    packet. Its framing is one header line, then ``FRAME\\n`` before each I420 frame.

    ``BufferedReader.read(n)`` allocates its ``bytes`` result and reads the pipe straight into
    it (only up to two 4 KiB blocks pass through the buffer), so a frame costs the kernel's
    copy and a few ``read`` calls made in C with the GIL released. Frames wait in a deque the
    consumer pops directly; the thread wakes the loop (``call_soon_threadsafe``) only when the
    consumer is waiting, which in steady state, with frames read ahead, it never is. The
    thread owns the descriptor and closes it when it ends: at the end of the stream (ffmpeg
    exited or was stopped) or on :meth:`stop`.

    It reads in bursts: once ``burst`` frames were taken it reads that many back to back, so
    its ffmpeg, blocked on the full pipe meanwhile, decodes a few frames per wakeup rather than
    one (measured: about 4% less CPU for the whole raw path; docs/benchmarks.md). A consumer
    that waits for sound ffmpeg has not written yet calls :meth:`kick`, to read what fits now:
    ffmpeg writes that sound only after the video it holds.
    """

    def __init__(
        self,
        name: str,
        fd: int,
        size: tuple[int, int],
        depth: int,
        loop: asyncio.AbstractEventLoop,
        burst: int = 1,
    ) -> None:
        self._fd = fd
        self._size = f"{size[0]}x{size[1]}".encode()
        self._frame_bytes = size[0] * size[1] * 3 // 2
        self._burst = max(1, min(burst, depth))
        self._stopping = False
        self._loop = loop
        self.frames: deque[bytes] = deque()
        """Read, not yet taken; shared with the thread under ``_lock``."""
        self._lock = threading.Lock()
        self._room_changed = threading.Condition(self._lock)
        self._room = depth
        """Frames that may be read before the queue is full (under ``_lock``)."""
        self._kicked = False
        self._ended = False
        self._waiter: asyncio.Future[None] | None = None
        """Set while the consumer waits for a frame; only then does the thread wake the loop."""
        self._done: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def poll(self) -> bytes | None:
        """The next frame when one was read ahead, else ``None`` (without waiting)."""
        with self._lock:
            if not self.frames:
                return None
            self._taken()
            return self.frames.popleft()

    def _taken(self) -> None:
        """One frame was taken (``_lock`` held): the thread reads again once a burst fits."""
        self._room += 1
        if self._room == self._burst:
            self._room_changed.notify()

    def kick(self) -> None:
        """Read what fits now, without waiting for a whole burst of room: the consumer waits
        for something (its audio) that ffmpeg writes only once its video pipe drains."""
        with self._lock:
            if not self._kicked and self._room:
                self._kicked = True
                self._room_changed.notify()

    async def next(self) -> bytes | None:
        """The next frame (``None`` at the end). Takes it at once when one was read ahead, as
        in steady state; waits on the loop only when none is."""
        while True:
            with self._lock:
                if self.frames:
                    self._taken()
                    return self.frames.popleft()
                if self._ended:
                    return None
                waiter = self._waiter = self._loop.create_future()
            await waiter

    async def stop(self, timeout: float = 5.0) -> None:
        """Wait for the thread to end (it does once the writer is gone)."""
        with self._lock:
            self._stopping = True
            self._room_changed.notify()  # a thread waiting for room goes on, and sees it
        try:
            await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except TimeoutError:
            log.warning("raw video reader did not end %gs after its ffmpeg", timeout)
        else:
            self._thread.join(1.0)  # it has closed the pipe and is returning: microseconds

    def _post(self, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(callback, *args)

    def _run(self) -> None:
        try:
            with open(self._fd, "rb", buffering=_Y4M_BLOCK) as pipe:
                if problem := self._check_header(pipe.readline(_Y4M_LINE)):
                    log.error("raw video: %s; ending the track", problem)
                    return
                while True:
                    with self._lock:
                        while not self._stopping and self._room < self._burst:
                            if self._kicked and self._room:
                                break
                            self._room_changed.wait()
                        if self._stopping:
                            return
                        n, self._room, self._kicked = self._room, 0, False
                    for _ in range(n):
                        if self._stopping or not pipe.readline(_Y4M_LINE).startswith(b"FRAME"):
                            return  # the end
                        frame = pipe.read(self._frame_bytes)
                        if len(frame) < self._frame_bytes:  # the end; a torn frame is dropped
                            return
                        with self._lock:
                            self.frames.append(frame)
                            waiter, self._waiter = self._waiter, None
                        if waiter is not None:
                            self._post(_wake, waiter)
        except OSError as exc:
            log.warning("raw video pipe failed: %s", exc)
        finally:
            with self._lock:
                self._ended = True
                waiter, self._waiter = self._waiter, None
            self._post(self._finish, waiter)

    def _check_header(self, line: bytes) -> str | None:
        """Why the YUV4MPEG2 stream header does not announce our frames (None when it does)."""
        if not line:
            return None  # ffmpeg ended before its first frame: an empty track, not a mismatch
        fields = line.split()
        if fields[:1] != [b"YUV4MPEG2"]:
            return f"not a YUV4MPEG2 stream (starts {line[:20]!r})"
        tags = {f[:1]: f[1:] for f in fields[1:]}
        size = tags.get(b"W", b"?") + b"x" + tags.get(b"H", b"?")
        if size != self._size or not tags.get(b"C", b"420").startswith(b"420"):
            return (
                f"ffmpeg writes {size.decode(errors='replace')} "
                f"{tags.get(b'C', b'420').decode(errors='replace')} frames, not "
                f"{self._size.decode()} 420 (does FFMPEG_ARGS change the size or pixel format?)"
            )
        return None

    def _finish(self, waiter: asyncio.Future[None] | None) -> None:
        _wake(waiter)
        if not self._done.done():
            self._done.set_result(None)
