"""Splice MPEG-TS streams from successive ffmpeg processes into one continuous stream.

Each track's ffmpeg starts its timestamps near zero. :class:`TsRebaser` shifts every PTS, DTS
and PCR of one source by a fixed delta, so the source continues exactly where the previous one
ended, and renumbers continuity counters per PID, so a downstream demuxer sees one unbroken
stream: one RTMP connection, timestamps that only go up.

All sources are produced by our own ffmpeg command lines with the same stream layout (video PID
0x100, audio PID 0x101), so PAT/PMT are identical and pass through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = ["PACKET", "TS_CLOCK", "TsRebaser", "TsChunk"]

PACKET: Final = 188
SYNC: Final = 0x47
TS_CLOCK: Final = 90_000
_WRAP: Final = 1 << 33
_NULL_PID: Final = 0x1FFF
_HOLD_LIMIT: Final = 4 << 20
"""Bytes held back at most while waiting for every stream's first timestamp."""
HOLE_SECONDS: Final = 0.3
"""A jump of the whole source's timeline forward by more than this is a hole (see TsRebaser)."""
_HOLE_AFTER: Final = TS_CLOCK
"""Holes are looked for once a second of the source has passed: at its start, streams begin
at different times and the first timestamps read are not yet a timeline."""


def _read_ts(b: bytearray, i: int) -> int:
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


@dataclass(slots=True)
class TsChunk:
    """Packets ready to write, and the latest rebased timestamp they carry (seconds)."""

    data: bytes
    pts: float | None


@dataclass
class TsRebaser:
    """Rebases one source. ``offset`` (seconds) is where the source's first timestamp lands.

    Continuity counters are shared across sources through ``counters``: pass the same dict to
    every rebaser of one output.

    The anchor is the earliest first timestamp among ``streams`` elementary streams, so packets
    are held back until each has shown one (at most ``_HOLD_LIMIT`` bytes). Anchoring on the very
    first timestamp seen is not enough: a live source often delivers audio before the first
    decodable video frame, whose DTS (B-frames) then lies before that audio, and the video would
    land before the previous track's end.

    A **hole** is a jump of the source's own timeline (the latest timestamp of any stream, PCR
    included) forward by more than ``HOLE_SECONDS``: every stream skipped the same stretch, as a
    live stream read late does when it skips expired segments. Kept, it would freeze the picture
    for its length downstream; it is cut out instead (the source continues one ``frame`` after
    its latest timestamp) and noted in ``holes`` for the feed to log and count.
    """

    offset: float
    counters: dict[int, int] = field(default_factory=dict)
    streams: int = 1
    """Elementary streams that anchor the source; with 1, the first timestamp does."""
    base: int | None = None
    last: int | None = None
    """Latest rebased timestamp seen, in 90 kHz ticks (unwrapped)."""
    _pending: bytes = b""
    _prev_raw: int = 0
    _prev_delta: int = 0
    _held: bytearray = field(default_factory=bytearray)
    _firsts: dict[int, int] = field(default_factory=dict)
    """Per PID, the first raw timestamp (DTS, else PTS), while the anchor is not set."""
    frame: float = 1 / 30
    hole: float | None = HOLE_SECONDS
    """Seconds a forward jump must exceed to be cut out as a hole; ``None``: never cut."""
    holes: list[tuple[float, float]] = field(default_factory=list)
    """Holes cut out and not yet reported: (source seconds where it was, seconds skipped)."""
    _top: int | None = None
    """The source's latest timestamp so far, relative to its anchor (90 kHz ticks)."""

    @property
    def end(self) -> float | None:
        return None if self.last is None else self.last / TS_CLOCK

    def _shift(self, raw: int, timeline: bool = True) -> int:
        """Unwrap ``raw`` relative to the previous timestamp seen (any stream), so that a
        source of any length, across any number of 33-bit wraps, keeps increasing.

        ``timeline=False`` for a PTS that follows its DTS: it runs ahead by the reorder delay,
        so it neither moves nor is checked against the source's timeline (holes)."""
        if self.base is None:
            self.base = self._prev_raw = raw
        step = (raw - self._prev_raw) % _WRAP
        if step > _WRAP // 2:  # slightly earlier than the previous one: B-frames, interleave
            step -= _WRAP
        self._prev_raw = raw
        self._prev_delta += step
        if timeline and self.hole is not None:
            self._cut_hole(self.hole)
        return round(self.offset * TS_CLOCK) + self._prev_delta

    def _cut_hole(self, hole: float) -> None:
        top = self._top
        if top is not None and top >= _HOLE_AFTER:
            jump = self._prev_delta - top
            if jump > hole * TS_CLOCK:
                skipped = jump - round(self.frame * TS_CLOCK)
                self.holes.append((top / TS_CLOCK, skipped / TS_CLOCK))
                self._prev_delta -= skipped
        self._top = self._prev_delta if top is None else max(top, self._prev_delta)

    def feed(self, data: bytes) -> TsChunk:
        """Rebase whole packets of ``data``; a trailing partial packet waits for the next call.

        Until the anchor is known the packets are held and an empty chunk comes back."""
        buf = bytearray(self._pending + data)
        whole = len(buf) - len(buf) % PACKET
        self._pending = bytes(buf[whole:])
        if self.base is None and self.streams > 1:
            self._note_firsts(buf, whole)
            self._held += buf[:whole]
            if len(self._firsts) < self.streams and len(self._held) < _HOLD_LIMIT:
                return TsChunk(b"", None)
            if self._firsts:
                self.base = self._prev_raw = self._earliest(list(self._firsts.values()))
            buf, self._held = self._held, bytearray()
            whole = len(buf)
        latest: int | None = None
        for pos in range(0, whole, PACKET):
            if buf[pos] != SYNC:
                raise ValueError(f"lost MPEG-TS sync at byte {pos}")
            pid = ((buf[pos + 1] & 0x1F) << 8) | buf[pos + 2]
            if pid == _NULL_PID:
                continue
            afc = (buf[pos + 3] >> 4) & 0x3
            if afc & 0x1:  # has payload: renumber the continuity counter
                cc = (self.counters.get(pid, -1) + 1) & 0x0F
                self.counters[pid] = cc
                buf[pos + 3] = (buf[pos + 3] & 0xF0) | cc
            payload = pos + 4
            if afc & 0x2:
                alen = buf[pos + 4]
                if alen >= 7 and buf[pos + 5] & 0x10:  # PCR present
                    self._rebase_pcr(buf, pos + 6)
                payload = pos + 5 + alen
            if afc & 0x1 and buf[pos + 1] & 0x40 and payload + 14 <= pos + PACKET:
                stamp = self._rebase_pes(buf, payload)
                if stamp is not None:
                    latest = stamp if latest is None else max(latest, stamp)
        if latest is not None:
            self.last = latest if self.last is None else max(self.last, latest)
        return TsChunk(bytes(buf[:whole]), None if latest is None else latest / TS_CLOCK)

    def _note_firsts(self, buf: bytearray, whole: int) -> None:
        for pos in range(0, whole, PACKET):
            if buf[pos] != SYNC:
                raise ValueError(f"lost MPEG-TS sync at byte {len(self._held) + pos}")
            pid = ((buf[pos + 1] & 0x1F) << 8) | buf[pos + 2]
            afc = (buf[pos + 3] >> 4) & 0x3
            if pid in self._firsts or not afc & 0x1 or not buf[pos + 1] & 0x40:
                continue
            p = pos + 4 + (buf[pos + 4] + 1 if afc & 0x2 else 0)
            if p + 14 > pos + PACKET or buf[p : p + 3] != b"\x00\x00\x01":
                continue
            stream_id, flags = buf[p + 3], buf[p + 7] >> 6
            if (stream_id < 0xC0 and stream_id not in (0xBD, 0xFD)) or not flags & 0x2:
                continue
            self._firsts[pid] = _read_ts(buf, p + 14 if flags == 0x3 else p + 9)

    @staticmethod
    def _earliest(stamps: list[int]) -> int:
        """The earliest of raw 33-bit stamps that lie close together, across a wrap too."""
        ref = stamps[0]
        return min(stamps, key=lambda s: ((s - ref + _WRAP // 2) % _WRAP) - _WRAP // 2)

    def _rebase_pes(self, buf: bytearray, p: int) -> int | None:
        if buf[p] != 0 or buf[p + 1] != 0 or buf[p + 2] != 1:
            return None
        stream_id = buf[p + 3]
        if stream_id < 0xC0 and stream_id not in (0xBD, 0xFD):  # no PTS in system streams
            return None
        flags = buf[p + 7] >> 6
        stamp = None
        if flags == 0x3:
            # DTS first: with B-frames it precedes PTS, and the earliest timestamp of a source
            # must anchor it, or its first frames would land before the previous track's end.
            dts = self._shift(_read_ts(buf, p + 14))
            _write_ts(buf, p + 14, dts)
        if flags & 0x2:
            stamp = self._shift(_read_ts(buf, p + 9), timeline=flags != 0x3)
            _write_ts(buf, p + 9, stamp)
        return stamp

    def _rebase_pcr(self, buf: bytearray, i: int) -> None:
        base = buf[i] << 25 | buf[i + 1] << 17 | buf[i + 2] << 9 | buf[i + 3] << 1 | buf[i + 4] >> 7
        new = self._shift(base) % _WRAP
        buf[i] = (new >> 25) & 0xFF
        buf[i + 1] = (new >> 17) & 0xFF
        buf[i + 2] = (new >> 9) & 0xFF
        buf[i + 3] = (new >> 1) & 0xFF
        buf[i + 4] = (buf[i + 4] & 0x7F) | ((new & 1) << 7)
