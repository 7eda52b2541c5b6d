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
- **GOP boundaries**: a source starts, and resumes after the slate covered a gap inside it
  (:meth:`TsRebaser.resplice`), on a video keyframe (random access indicator); the units before
  it are dropped.
- **Timestamps only go up, without holes**: :class:`TsTimeline` remembers, per PID, where the
  output's last written unit ended. A new source is shifted so that its video continues exactly
  one frame after the previous video; its audio, shifted alike, drops the frames that would
  overlap the previous audio by more than half a frame. DTS stay strictly rising: where a source
  has more B-frame delay than the one before, its first DTS are raised to 1 ms steps after the
  last one written until its own catch up.

All sources are produced by our own ffmpeg command lines with the same stream layout (video PID
0x100, audio PID 0x101), so PAT/PMT are identical and pass through unchanged. ffmpeg's muxer
writes each PES as consecutive packets, which is what lets a cut at a PES start be a cut between
frames.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

__all__ = ["PACKET", "TS_CLOCK", "TsRebaser", "TsTimeline", "TsUnit"]

PACKET: Final = 188
SYNC: Final = 0x47
TS_CLOCK: Final = 90_000
_WRAP: Final = 1 << 33
_HALF: Final = 1 << 32
_NULL_PID: Final = 0x1FFF
_HOLD_LIMIT: Final = 4 << 20
"""Bytes held back at most while waiting for a keyframe and every stream's first timestamp."""
_MIN_DTS_STEP: Final = 90
"""Ticks (1 ms) a stream's first DTS lies at least after the previous source's last DTS on that
stream: distinct even in FLV's millisecond timestamps."""


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
            self.ends[unit.pid] = _End(pts_end, dts)
        else:
            end.pts_end = max(end.pts_end, pts_end)
            end.dts = max(end.dts, dts)


@dataclass
class TsRebaser:
    """Cuts one source into units and places them on the output timeline.

    :meth:`push` the bytes read (``b""`` at end of stream), :meth:`pop` units while
    :meth:`ready`. ``offset`` (seconds) places the first source of an output, for streams the
    timeline has not seen yet; afterwards the timeline's ends place each source.

    The anchor waits for a video keyframe (when ``streams`` > 1, the first is video) and for a
    timestamp on each of ``streams`` elementary streams (at most ``_HOLD_LIMIT`` bytes); units
    before the keyframe are dropped.
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
    _cur: TsUnit | None = None
    _partial: bytes = b""
    _prev_raw: int | None = None
    _prev_u: int = 0
    _last_dts: dict[int, int] = field(default_factory=dict)
    _steps: dict[int, int] = field(default_factory=dict)
    _eof: bool = False
    _anchorable: bool = False
    _dropped_bytes: int = 0
    _floors: dict[int, int] = field(default_factory=dict)
    _dts_floors: dict[int, int] = field(default_factory=dict)
    """Per non-leading PID, after an anchor: units starting before this are dropped."""
    _last_stamp: int | None = None
    """Output ticks of the latest unit popped."""

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

    def _close(self, unit: TsUnit) -> None:
        stamp = unit.stamp
        if stamp is not None:
            last = self._last_dts.get(unit.pid)
            if last is not None and stamp > last:
                self._steps[unit.pid] = stamp - last
            self._last_dts[unit.pid] = stamp
            unit.duration = self._steps.get(unit.pid, round(self.default_duration * TS_CLOCK))
        self._queue.append(unit)
        self._queued_bytes += len(unit.data)

    # ---- anchoring ----------------------------------------------------------------------------

    def resplice(self) -> None:
        """Something else (the slate) is written from now on: continue this source after it,
        on its next keyframe, placed by the timeline's ends as then."""
        self.origin = None
        self._anchorable = False
        self._settle()

    def _settle(self) -> None:
        """Before the anchor: drop units up to a video keyframe, then see whether every
        stream has shown a timestamp."""
        if self.origin is not None or self._anchorable:
            return
        q = self._queue
        if self.streams > 1:
            while q and not (q[0].video and q[0].key) and self._dropped_bytes < _HOLD_LIMIT:
                self._queued_bytes -= len(q[0].data)
                self.dropped += 1
                self._dropped_bytes += len(q[0].data)
                q.popleft()
        seen = {u.pid for u in q if u.pts is not None}
        self._anchorable = bool(q) and (
            len(seen) >= self.streams or self._eof or self._queued_bytes >= _HOLD_LIMIT
        )

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
        leading = [pid for pid, u in firsts.items() if u.video and pid in ends] or list(firsts)
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
        self._dropped_bytes = 0

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
            unit = self._queue.popleft()
            self._queued_bytes -= len(unit.data)
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
