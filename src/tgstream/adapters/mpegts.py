"""Splice MPEG-TS streams from successive ffmpeg processes into one continuous stream.

Each track's ffmpeg starts its timestamps near zero. :class:`TsRebaser` cuts one source into
access units (one PES each: one video frame or one audio frame, with the PSI and PCR-only
packets that come before the next PES), then places each unit on the output timeline when it is
taken: every PTS, DTS and PCR of the source is shifted by one fixed delta, and continuity
counters are renumbered per PID, so a downstream demuxer sees one unbroken stream: one RTMP
connection, timestamps that only go up.

Splices follow three rules, so what reaches a viewer decodes:

- **Whole frames**: a unit is handed out only once the next PES has begun (or the source has
  ended); a source is never cut inside a frame.
- **GOP boundaries**: a source starts, and resumes after the slate's picture covered a gap
  inside it (:meth:`TsRebaser.resplice`), on a video keyframe (random access indicator); the
  units before it are dropped, but for the sound of the keyframe's own time muxed just before
  it. After a gap covered by the slate's sound alone (the picture held on the source's last
  frame, :attr:`TsRebaser.audio_only`), the source resumes on its very next unit: its decoder
  state is intact, so nothing is dropped.
- **Timestamps only go up, without holes**: :class:`TsTimeline` remembers, per PID, where the
  output's last written unit ended. A new source is shifted so that its video continues exactly
  one frame after the previous video; its audio, shifted alike, drops the frames that would
  overlap the previous audio by more than half a frame (when the previous audio runs on more
  than 0.2 s past the video, as after a held picture, every stream continues after its own end
  instead, and the video steps by what was not covered). DTS stay strictly rising: where a source
  has more B-frame delay than the one before, its first DTS are raised to 1 ms steps after the
  last one written until its own catch up.

All sources are produced by our own ffmpeg command lines with the same stream layout (video PID
0x100, audio PID 0x101), so PAT/PMT are identical and pass through unchanged. ffmpeg's muxer
writes each PES as consecutive packets, which is what lets a cut at a PES start be a cut between
frames.

A **hole** is a forward jump of a source's own timeline (the latest timestamp of any stream) by
more than ``HOLE_SECONDS``: every stream skipped the same stretch, as a live stream read late
does when it skips expired segments. Kept, it would freeze the picture for its length
downstream; the rebaser cuts it out (the source continues one frame after its latest timestamp)
and notes it in :attr:`TsRebaser.holes` for the feed to log and count.

:class:`TsEntry` is the other end: where a freshly started demuxer (the publisher's ffmpeg after a
reconnect) can join the running stream: PAT, PMT, then a keyframe.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

__all__ = ["PACKET", "TS_CLOCK", "HOLE_SECONDS", "TsRebaser", "TsTimeline", "TsUnit", "TsEntry"]

PACKET: Final = 188
SYNC: Final = 0x47
TS_CLOCK: Final = 90_000
_WRAP: Final = 1 << 33
_HALF: Final = 1 << 32
_NULL_PID: Final = 0x1FFF
_HOLD_LIMIT: Final = 4 << 20
"""Bytes held back at most while waiting for every stream's first timestamp."""
_KEY_WAIT: Final = 20 * TS_CLOCK
"""Source ticks dropped at most while waiting for a video keyframe: longer than any GOP a
source sensibly has (x264's default keyint, 250 frames, is 10 s at 25 fps), so only a source
that flags no keyframes at all is played from a frame that is not one. Time, not bytes: the
rest of a GOP at a high bitrate is megabytes, and a bound in bytes let its last frames through
without the frames they refer to."""
_MIN_DTS_STEP: Final = 90
"""Ticks (1 ms) a stream's first DTS lies at least after the previous source's last DTS on that
stream: distinct even in FLV's millisecond timestamps."""
_MAX_OVERLAP: Final = TS_CLOCK // 5
"""Ticks (0.2 s) of a stream's previous end its first frames may overlap, to be dropped. A
larger overlap is no mismatch of a source's stream ends but the sound alone having covered a
gap (the picture held): the source then continues every stream after its own end."""
HOLE_SECONDS: Final = 0.3
"""A jump of the whole source's timeline forward by more than this is a hole (see TsRebaser)."""
_HOLE_AFTER: Final = TS_CLOCK
"""Holes are looked for once a second of the source has passed: at its start, streams begin
at different times and the first timestamps read are not yet a timeline."""


def _read_ts(b: bytes | bytearray, i: int) -> int:
    return (
        ((b[i] >> 1) & 0x07) << 30
        | b[i + 1] << 22
        | (b[i + 2] >> 1) << 15
        | b[i + 3] << 7
        | b[i + 4] >> 1
    )


def _write_ts(b: bytearray, i: int, value: int) -> None:
    value %= _WRAP
    b[i] = (b[i] & 0xF1) | ((value >> 29) & 0x0E)
    b[i + 1] = (value >> 22) & 0xFF
    b[i + 2] = ((value >> 14) & 0xFE) | 1
    b[i + 3] = (value >> 7) & 0xFF
    b[i + 4] = ((value << 1) & 0xFE) | 1


def _signed(step: int) -> int:
    """A 33-bit difference as the nearest signed step (B-frames and interleave go back a bit)."""
    step %= _WRAP
    return step - _WRAP if step >= _HALF else step


@dataclass(slots=True)
class TsUnit:
    """One access unit of a source: its packets and where it lies on the source's timeline.

    Timestamps are source ticks, unwrapped (they keep increasing across 33-bit wraps); after
    :meth:`TsRebaser.pop` they are output ticks (unwrapped too) and ``data`` is rebased."""

    data: bytearray
    pid: int = -1
    """PID of its PES; -1 for packets without one (PSI only)."""
    video: bool = False
    key: bool = False
    """The PES starts with a random access point (a video keyframe; every audio frame)."""
    pts: int | None = None
    dts: int | None = None
    duration: int = 0
    """Ticks until the next unit of the same PID (the latest spacing seen on it)."""
    _hdr: int = -1
    """Offset in ``data`` of the PES header (00 00 01 ...)."""
    _raw: int = 0
    """A raw 33-bit stamp of this unit and its unwrapped value: PCRs are unwrapped near it."""
    _ref: int = 0

    @property
    def stamp(self) -> int | None:
        """When the unit is needed: its DTS, else its PTS."""
        return self.dts if self.dts is not None else self.pts

    @property
    def end(self) -> int | None:
        """Presentation end: PTS plus duration."""
        return None if self.pts is None else self.pts + self.duration


@dataclass(slots=True)
class _End:
    pts_end: int
    dts: int
    video: bool = False
    duration: int = 0
    """Of the latest unit: a frame of this stream."""


@dataclass
class TsTimeline:
    """What every rebaser of one output shares: continuity counters and, per PID, where the
    last unit written ends (output ticks, unwrapped)."""

    counters: dict[int, int] = field(default_factory=dict)
    ends: dict[int, _End] = field(default_factory=dict)

    def note(self, unit: TsUnit) -> None:
        if unit.pid < 0 or unit.pts is None:
            return
        dts = unit.stamp
        assert dts is not None
        end = self.ends.get(unit.pid)
        pts_end = unit.pts + unit.duration
        if end is None:
            self.ends[unit.pid] = _End(pts_end, dts, unit.video, unit.duration)
        else:
            end.pts_end = max(end.pts_end, pts_end)
            end.dts = max(end.dts, dts)
            end.duration = unit.duration

    def sound_behind(self) -> bool:
        """An audio stream ends more than half its frame before the video does: the output
        would stop (or splice) with the last frames' sound missing."""
        video = [e.pts_end for e in self.ends.values() if e.video]
        if not video:
            return False
        return any(
            e.pts_end + e.duration // 2 < max(video) for e in self.ends.values() if not e.video
        )


@dataclass
class TsRebaser:
    """Cuts one source into units and places them on the output timeline.

    :meth:`push` the bytes read (``b""`` at end of stream), :meth:`pop` units while
    :meth:`ready`. ``offset`` (seconds) places the first source of an output, for streams the
    timeline has not seen yet; afterwards the timeline's ends place each source.

    The anchor waits for a video keyframe (when ``streams`` > 1, the first is video; units
    before it are dropped, over at most ``_KEY_WAIT`` of the source's timeline) and for a
    timestamp on each of ``streams`` elementary streams (at most ``_HOLD_LIMIT`` bytes held).
    """

    offset: float
    timeline: TsTimeline = field(default_factory=TsTimeline)
    streams: int = 1
    """Elementary streams that anchor the source; with 1, the first timestamp does."""
    default_duration: float = 1 / 30
    """Seconds a unit lasts until its stream's spacing is known."""
    origin: int | None = None
    """Output ticks of the source's unwrapped tick 0; ``None`` until anchored."""
    gap: float = 0.0
    """Seconds of timeline left uncovered at the latest anchor (the largest over streams)."""
    dropped: int = 0
    """Units dropped while waiting for a keyframe."""
    _queue: deque[TsUnit] = field(default_factory=deque)
    _queued_bytes: int = 0
    _taken: int = 0
    """Units taken from the queue's left so far (the queue only grows on the right)."""
    _stamped_at: dict[int, int] = field(default_factory=dict)
    """Per PID, the position (in units ever queued) of its latest unit with a timestamp: the PID
    has a timestamp in the queue while that is not yet taken. Kept as units come, so waiting
    for a stream that never shows costs nothing per packet."""
    _cur: TsUnit | None = None
    _partial: bytes = b""
    _prev_raw: int | None = None
    _prev_u: int = 0
    _last_dts: dict[int, int] = field(default_factory=dict)
    _steps: dict[int, int] = field(default_factory=dict)
    _eof: bool = False
    _anchorable: bool = False
    _wait_from: int | None = None
    """Source ticks of the first unit dropped while waiting for a keyframe."""
    _floors: dict[int, int] = field(default_factory=dict)
    _dts_floors: dict[int, int] = field(default_factory=dict)
    """Per non-leading PID, after an anchor: units starting before this are dropped."""
    _last_stamp: int | None = None
    """Output ticks of the latest unit popped."""
    audio_only: bool = False
    """Hand out audio units only; video ones are dropped unwritten (the slate's sound covering a
    short gap inside a track, whose picture holds on its last frame)."""
    _key_needed: bool = True
    """The next anchor waits for a video keyframe (always the first one)."""
    _after_all: bool = False
    """The next anchor continues every stream after its own end (after a sound-only gap)."""
    hole: float | None = HOLE_SECONDS
    """Seconds a forward jump must exceed to be cut out as a hole; ``None``: never cut."""
    holes: list[tuple[float, float]] = field(default_factory=list)
    """Holes cut out and not yet reported: (source seconds where it was, seconds skipped)."""
    _top: int | None = None
    """The source's latest timestamp so far (source ticks, unwrapped, holes cut)."""

    @property
    def eof(self) -> bool:
        """The source ended and every unit has been popped."""
        return self._eof and not self._queue

    @property
    def end(self) -> float | None:
        """Output seconds just after the latest unit popped (its DTS plus duration)."""
        return None if self._last_stamp is None else self._last_stamp / TS_CLOCK

    # ---- cutting ----------------------------------------------------------------------------

    def _unwrap(self, raw: int) -> int:
        if self._prev_raw is None:
            self._prev_raw = raw
            return 0
        self._prev_u += _signed(raw - self._prev_raw)
        self._prev_raw = raw
        return self._prev_u

    def push(self, data: bytes) -> None:
        """Cut whole packets of ``data`` into units; ``b""`` ends the source. A trailing partial
        packet, and the unit in progress, wait for the next call."""
        if not data:
            self._eof = True
            if self._cur is not None:
                self._close(self._cur)
                self._cur = None
            self._settle()
            return
        buf = self._partial + data if self._partial else data
        whole = len(buf) - len(buf) % PACKET
        self._partial = buf[whole:]
        cur = self._cur
        start = 0  # where the bytes not yet added to ``cur`` begin
        for pos in range(0, whole, PACKET):
            if buf[pos] != SYNC:
                raise ValueError(f"lost MPEG-TS sync at byte {pos}")
            b1 = buf[pos + 1]
            if not b1 & 0x40:  # no payload unit start: continues the unit in progress
                continue
            pid = ((b1 & 0x1F) << 8) | buf[pos + 2]
            if pid == _NULL_PID:
                continue
            b3 = buf[pos + 3]
            p = pos + 4 + (buf[pos + 4] + 1 if b3 & 0x20 else 0)
            is_pes = p + 3 <= pos + PACKET and buf[p : p + 3] == b"\x00\x00\x01"
            if cur is None or cur.pid >= 0:  # a PES or PSI after a PES: a new unit begins
                if cur is not None:
                    cur.data += buf[start:pos]
                    self._close(cur)
                cur = TsUnit(bytearray())
                start = pos
            if is_pes:
                self._begin_pes(cur, buf, pos, p, len(cur.data) + p - start)
        if cur is not None:
            cur.data += buf[start:whole]
        self._cur = cur
        self._settle()

    def _begin_pes(self, unit: TsUnit, buf: bytes, pos: int, p: int, hdr: int) -> None:
        if p + 9 > pos + PACKET:
            return
        stream_id = buf[p + 3]
        unit.pid = ((buf[pos + 1] & 0x1F) << 8) | buf[pos + 2]
        unit.video = 0xE0 <= stream_id <= 0xEF
        unit.key = bool(buf[pos + 3] & 0x20 and buf[pos + 4] and buf[pos + 5] & 0x40)
        unit._hdr = hdr
        if stream_id < 0xC0 and stream_id not in (0xBD, 0xFD):  # no timestamps in system streams
            return
        flags = buf[p + 7] >> 6
        if not flags & 0x2 or p + (19 if flags == 0x3 else 14) > pos + PACKET:
            return
        raw = _read_ts(buf, p + 9)
        unit.pts = self._unwrap(raw)
        unit._raw, unit._ref = raw, unit.pts
        if flags == 0x3:
            unit.dts = unit.pts + _signed(_read_ts(buf, p + 14) - raw)
        if self.hole is not None:
            self._cut_hole(unit, self.hole)

    def _cut_hole(self, unit: TsUnit, hole: float) -> None:
        """Cut a forward jump of the source's timeline at ``unit`` out of it (see the module)."""
        stamp = unit.stamp
        assert stamp is not None
        assert unit.pts is not None
        top = self._top
        if top is not None and top >= _HOLE_AFTER and stamp - top > hole * TS_CLOCK:
            skipped = stamp - top - round(self.default_duration * TS_CLOCK)
            self.holes.append((top / TS_CLOCK, skipped / TS_CLOCK))
            self._prev_u -= skipped
            unit.pts -= skipped
            unit._ref -= skipped
            if unit.dts is not None:
                unit.dts -= skipped
            stamp -= skipped
        self._top = stamp if top is None else max(top, stamp)

    def _close(self, unit: TsUnit) -> None:
        stamp = unit.stamp
        if stamp is not None:
            last = self._last_dts.get(unit.pid)
            if last is not None and stamp > last:
                self._steps[unit.pid] = stamp - last
            self._last_dts[unit.pid] = stamp
            unit.duration = self._steps.get(unit.pid, round(self.default_duration * TS_CLOCK))
        if unit.pts is not None:
            self._stamped_at[unit.pid] = self._taken + len(self._queue)
        self._queue.append(unit)
        self._queued_bytes += len(unit.data)

    def _take(self) -> TsUnit:
        """The unit at the queue's left, out of it."""
        unit = self._queue.popleft()
        self._taken += 1
        self._queued_bytes -= len(unit.data)
        return unit

    # ---- anchoring ----------------------------------------------------------------------------

    def resplice(self, keyframe: bool = True) -> None:
        """Something else (the slate) is written from now on: continue this source after it,
        placed by the timeline's ends as then. ``keyframe``: other video was written (the
        slate's picture), so the source resumes on its next keyframe; without it (only the
        slate's sound went out) on its next unit, every stream continuing after its own end, so
        the picture holds on its last frame for the gap and no frame is dropped."""
        self._key_needed = keyframe or (self.origin is None and self._key_needed)
        self._after_all = not self._key_needed
        self.origin = None
        self._anchorable = False
        self._settle()

    def _settle(self) -> None:
        """Before the anchor: drop units up to a video keyframe, then see whether every
        stream has shown a timestamp."""
        if self.origin is not None or self._anchorable:
            return
        q = self._queue
        if self.streams > 1 and self._key_needed:
            self._drop_before_key()
        seen = sum(1 for at in self._stamped_at.values() if at >= self._taken)
        self._anchorable = bool(q) and (
            seen >= self.streams or self._eof or self._queued_bytes >= _HOLD_LIMIT
        )

    def _drop_before_key(self) -> None:
        """Drop what comes before the first video keyframe: every other picture, and the sound
        before the last of those. The sound muxed between the last other picture and the
        keyframe waits for it: what starts at the keyframe's time (within half a frame) is
        kept, so a source's sound starts with its picture (the slate's encoder puts two audio
        frames of the keyframe's time before it; dropped, they left a 45 ms hole in the sound
        at every slate restart)."""
        q = self._queue
        cut, key = 0, None
        for i, u in enumerate(q):
            if u.video:
                if u.key:
                    key = u
                    break
                cut = i + 1
        if key is None and self._eof:
            cut = len(q)  # no keyframe will come: nothing of this rest plays
        for _ in range(cut):
            stamp = q[0].stamp
            if stamp is not None:
                if self._wait_from is None:
                    self._wait_from = stamp
                elif stamp - self._wait_from > _KEY_WAIT:
                    return  # no keyframe flagged for too long: play on from here
            self._take()
            self.dropped += 1
        if key is None:
            return
        while q[0] is not key:
            u = q[0]
            if u.pts is not None and key.pts is not None and u.pts + u.duration // 2 >= key.pts:
                break  # the sound of the keyframe's time: it plays, and so does what follows
            self._take()
            self.dropped += 1

    def _anchor(self) -> None:
        """Place the source: the video continues right after the previous video (its first
        DTS after the last one); audio follows with the same shift, its first frames dropped
        where they would overlap the previous audio by more than half a frame. A source and
        its predecessor rarely end their audio and video at the same instant: the video, which
        shows a hole as a stutter, is kept seamless, and the audio hole or overlap stays within
        half an audio frame. Without video, the audio is placed the same way."""
        firsts: dict[int, TsUnit] = {}
        for u in self._queue:
            if u.pts is not None and u.pid not in firsts:
                firsts[u.pid] = u
        ends = self.timeline.ends
        leading = [
            pid for pid, u in firsts.items() if (u.video or self._after_all) and pid in ends
        ] or list(firsts)
        offset = round(self.offset * TS_CLOCK)
        candidates = []
        for pid in leading:
            u = firsts[pid]
            assert u.pts is not None
            dts = u.stamp
            assert dts is not None
            end = ends.get(pid)
            if end is None:
                candidates.append(offset - min(u.pts, dts))
            else:
                candidates.append(end.pts_end - u.pts)
        origin = max(candidates) if candidates else offset
        overlaps = [
            ends[pid].pts_end - origin - u.pts
            for pid, u in firsts.items()
            if pid not in leading and pid in ends and u.pts is not None
        ]
        if overlaps and max(overlaps) > _MAX_OVERLAP:
            origin += max(overlaps)  # the picture held meanwhile: it steps, nothing dropped
        self.origin = origin
        # A source whose frames wait longer between decoding and display (B-frames) than the
        # previous one's would decode before the previous frames: its first DTS are raised to
        # just after the last one written, 1 ms apart, until its own catch up.
        self._dts_floors = {pid: end.dts + _MIN_DTS_STEP for pid, end in ends.items()}
        self._floors = {
            pid: ends[pid].pts_end - u.duration // 2
            for pid, u in firsts.items()
            if pid not in leading and pid in ends
        }
        gaps = [0.0]
        for pid, first in firsts.items():
            if pid not in ends:
                continue
            floor = self._floors.get(pid)
            kept = next(
                (
                    u
                    for u in self._queue
                    if u.pid == pid
                    and u.pts is not None
                    and (floor is None or origin + u.pts >= floor)
                ),
                first,
            )
            assert kept.pts is not None
            gaps.append((origin + kept.pts - ends[pid].pts_end) / TS_CLOCK)
        self.gap = max(gaps)
        self._wait_from = None
        self._key_needed = self._after_all = False

    # ---- placing ------------------------------------------------------------------------------

    def ready(self) -> bool:
        """A unit can be popped now."""
        return bool(self._queue) and (self.origin is not None or self._anchorable)

    def pop(self) -> TsUnit | None:
        """The next unit placed on the output timeline (noted in the timeline as written), or
        ``None`` when none is :meth:`ready` (or the units that were all overlapped the previous
        source and were dropped)."""
        if not self.ready():
            return None
        if self.origin is None:
            self._anchor()
        origin = self.origin
        assert origin is not None
        while True:
            unit = self._take()
            if self.audio_only and unit.video:
                self.dropped += 1
                if not self._queue:
                    return None
                continue
            floor = self._floors.get(unit.pid)
            if floor is None or unit.pts is None:
                break
            if origin + unit.pts >= floor:
                del self._floors[unit.pid]
                break
            self.dropped += 1  # overlaps the previous source's audio
            if not self._queue:
                return None
        if unit.pts is not None:
            unit.pts += origin
        if unit.dts is not None:
            unit.dts += origin
        floor = self._dts_floors.get(unit.pid)
        stamp = unit.stamp
        if floor is not None and stamp is not None:
            if stamp >= floor:
                del self._dts_floors[unit.pid]
            elif unit.dts is not None and unit.pts is not None and floor <= unit.pts:
                unit.dts = floor
                self._dts_floors[unit.pid] = floor + _MIN_DTS_STEP
        self._rebase(unit, origin)
        stamp = unit.stamp
        if stamp is not None:
            self._last_stamp = max(self._last_stamp or stamp, stamp + unit.duration)
        self.timeline.note(unit)
        return unit

    def _rebase(self, unit: TsUnit, origin: int) -> None:
        buf = unit.data
        counters = self.timeline.counters
        ref_raw, ref_u = unit._raw, unit._ref
        if unit.pts is None and self._prev_raw is not None:
            ref_raw, ref_u = self._prev_raw, self._prev_u
        for pos in range(0, len(buf), PACKET):
            b3 = buf[pos + 3]
            pid = ((buf[pos + 1] & 0x1F) << 8) | buf[pos + 2]
            if pid == _NULL_PID:
                continue
            if b3 & 0x10:  # has payload: renumber the continuity counter
                cc = (counters.get(pid, -1) + 1) & 0x0F
                counters[pid] = cc
                buf[pos + 3] = (b3 & 0xF0) | cc
            if b3 & 0x20 and buf[pos + 4] >= 7 and buf[pos + 5] & 0x10:  # PCR present
                i = pos + 6
                raw = (buf[i] << 25 | buf[i + 1] << 17 | buf[i + 2] << 9 | buf[i + 3] << 1) | buf[
                    i + 4
                ] >> 7
                new = (origin + ref_u + _signed(raw - ref_raw)) % _WRAP
                buf[i] = (new >> 25) & 0xFF
                buf[i + 1] = (new >> 17) & 0xFF
                buf[i + 2] = (new >> 9) & 0xFF
                buf[i + 3] = (new >> 1) & 0xFF
                buf[i + 4] = (buf[i + 4] & 0x7F) | ((new & 1) << 7)
        if unit.pts is not None:
            p = unit._hdr
            _write_ts(buf, p + 9, unit.pts)
            if unit.dts is not None and buf[p + 7] >> 6 == 0x3:
                _write_ts(buf, p + 14, unit.dts)


_VIDEO_TYPES: Final = frozenset({0x01, 0x02, 0x10, 0x1B, 0x24})
_AUDIO_TYPES: Final = frozenset({0x03, 0x04, 0x0F, 0x11, 0x81})
_H264: Final = 0x1B
_HEVC: Final = 0x24


@dataclass
class TsEntry:
    """Where a demuxer that starts now can join a running MPEG-TS stream.

    Every chunk of the stream goes through :meth:`feed`, which keeps the latest PAT and PMT
    packets. After :meth:`rejoin`, :meth:`feed` returns nothing until the next random-access
    point of the lead stream (the first video stream of the PMT, else its first audio stream):
    a PES start flagged by the adaptation field's ``random_access_indicator``, or, for H.264 and
    HEVC, with an IDR/IRAP picture or the parameter sets that open one in its first packet.
    From there it returns the stream, prefixed with the PAT and PMT, so the new demuxer knows
    every stream and its first video frame decodes. The prefixed tables are the latest seen,
    so their continuity counters run on into the next ones in the stream.

    With ``gop_limit`` > 0 it also holds the stream since the latest random-access point (one
    GOP, up to ``gop_limit`` bytes; a longer GOP is not held), and after :meth:`rejoin` the
    next :meth:`feed` returns that GOP at once, behind the tables of its start: a demuxer that
    starts mid-GOP gets a keyframe now instead of at the next one (up to a GOP later), and an
    RTMP server holds a keyframe as soon as the publisher is back.
    """

    joined: bool = False
    pat: bytes | None = None
    pmt: bytes | None = None
    _pmt_pid: int | None = None
    _lead_pid: int | None = None
    _lead_type: int = 0
    _pending: bytes = b""
    gop_limit: int = 0
    _gop: list[bytes] = field(default_factory=list)
    """Whole packets since the latest random-access point; empty when none is held."""
    _gop_size: int = 0
    _gop_tables: bytes = b""
    """The PAT and PMT as they were at that point (their counters run on into the GOP)."""

    def rejoin(self) -> None:
        """Drop what follows up to the next random-access point (a new demuxer starts)."""
        self.joined = False

    def feed(self, data: bytes) -> bytes:
        """The bytes of ``data`` to pass on: nothing while waiting for a random-access point;
        a trailing partial packet waits for the next call."""
        buf = self._pending + data
        whole = len(buf) - len(buf) % PACKET
        self._pending = buf[whole:]
        was_joined = self.joined
        held = [] if was_joined else list(self._gop)  # as it was before this chunk
        held_tables = self._gop_tables
        start = 0 if was_joined else None
        last_access: int | None = None
        for pos in range(0, whole, PACKET):
            if buf[pos] != SYNC:
                raise ValueError(f"lost MPEG-TS sync at byte {pos}")
            pid = ((buf[pos + 1] & 0x1F) << 8) | buf[pos + 2]
            if pid == 0:
                self._note_pat(buf, pos)
            elif pid == self._pmt_pid:
                self._note_pmt(buf, pos)
            elif pid == self._lead_pid and (
                (start is None or self.gop_limit) and self._random_access(buf, pos)
            ):
                if start is None:
                    start = pos
                    self.joined = True
                if self.gop_limit:
                    last_access = pos
                    assert self.pat is not None
                    assert self.pmt is not None
                    self._gop_tables = self.pat + self.pmt
        if self.gop_limit:
            self._hold(buf, whole, last_access)
        if not was_joined and held and (start is None or start > 0):
            # Rejoined mid-GOP: the GOP so far first, then the stream as it comes.
            self.joined = True
            return b"".join([held_tables, *held, buf[:whole]])
        if start is None:
            return b""
        if was_joined:
            return buf[:whole]
        assert self.pat is not None  # the lead PID came from the PMT, the PMT PID from the PAT
        assert self.pmt is not None
        return self.pat + self.pmt + buf[start:whole]

    def _hold(self, buf: bytes, whole: int, last_access: int | None) -> None:
        """Keep the whole packets since the latest random-access point, within the limit."""
        if last_access is not None:
            self._gop, self._gop_size = [], 0
            chunk = buf[last_access:whole]
        elif self._gop:
            chunk = buf[:whole]
        else:
            return  # no random-access point seen yet, or the GOP outgrew the limit
        self._gop.append(chunk)
        self._gop_size += len(chunk)
        if self._gop_size > self.gop_limit:
            self._gop, self._gop_size = [], 0

    @staticmethod
    def _section(buf: bytes, pos: int, table_id: int) -> tuple[int, int] | None:
        """(start, end) of a table section that starts and ends in the packet at ``pos``."""
        if not buf[pos + 1] & 0x40:  # no section starts here
            return None
        afc = (buf[pos + 3] >> 4) & 0x3
        if not afc & 0x1:
            return None
        p = pos + 4 + (buf[pos + 4] + 1 if afc & 0x2 else 0)
        if p >= pos + PACKET:
            return None
        p += 1 + buf[p]  # pointer_field
        if p + 3 > pos + PACKET or buf[p] != table_id:
            return None
        end = p + 3 + (((buf[p + 1] & 0x0F) << 8) | buf[p + 2])
        return (p, end) if end <= pos + PACKET else None

    def _note_pat(self, buf: bytes, pos: int) -> None:
        section = self._section(buf, pos, 0x00)
        if section is None:
            return
        p, end = section
        for q in range(p + 8, end - 4, 4):  # program loop, CRC excluded
            if (buf[q] << 8 | buf[q + 1]) != 0:  # program 0 is the network PID
                self.pat = buf[pos : pos + PACKET]
                self._pmt_pid = ((buf[q + 2] & 0x1F) << 8) | buf[q + 3]
                return

    def _note_pmt(self, buf: bytes, pos: int) -> None:
        section = self._section(buf, pos, 0x02)
        if section is None:
            return
        p, end = section
        q = p + 12 + (((buf[p + 10] & 0x0F) << 8) | buf[p + 11])  # after program_info
        video = audio = None
        while q + 5 <= end - 4:
            kind, pid = buf[q], ((buf[q + 1] & 0x1F) << 8) | buf[q + 2]
            if kind in _VIDEO_TYPES and video is None:
                video = (pid, kind)
            elif kind in _AUDIO_TYPES and audio is None:
                audio = (pid, kind)
            q += 5 + (((buf[q + 3] & 0x0F) << 8) | buf[q + 4])
        lead = video or audio
        if lead is not None:
            self.pmt = buf[pos : pos + PACKET]
            self._lead_pid, self._lead_type = lead

    def _random_access(self, buf: bytes, pos: int) -> bool:
        """A PES starts here with a picture (or audio frame) a decoder can start on."""
        if not buf[pos + 1] & 0x40:
            return False
        afc = (buf[pos + 3] >> 4) & 0x3
        payload = pos + 4
        if afc & 0x2:
            alen = buf[pos + 4]
            if alen > 0 and buf[pos + 5] & 0x40:  # random_access_indicator
                return True
            payload += 1 + alen
        if self._lead_type in _AUDIO_TYPES:
            return True  # every audio frame is a random-access point
        if not afc & 0x1 or payload + 9 > pos + PACKET:
            return False
        body = buf[payload + 9 + buf[payload + 8] : pos + PACKET]  # after the PES header
        n = body.find(b"\x00\x00\x01")
        while 0 <= n < len(body) - 3:
            nal = body[n + 3]
            if self._lead_type == _H264 and nal & 0x1F in (5, 7):  # IDR, or the SPS before it
                return True
            if self._lead_type == _HEVC and (nal >> 1) & 0x3F in range(16, 33):  # IRAP, VPS
                return True
            n = body.find(b"\x00\x00\x01", n + 3)
        return False
