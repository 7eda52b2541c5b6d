"""Splice MPEG-TS streams from successive ffmpeg processes into one continuous stream.

Each track's ffmpeg starts its timestamps near zero. :class:`TsRebaser` shifts every PTS, DTS
and PCR of one source by a fixed delta, so the source continues exactly where the previous one
ended, and renumbers continuity counters per PID, so a downstream demuxer sees one unbroken
stream: one RTMP connection, timestamps that only go up.

All sources are produced by our own ffmpeg command lines with the same stream layout (video PID
0x100, audio PID 0x101), so PAT/PMT are identical and pass through unchanged.

:class:`TsEntry` is the other end: where a freshly started demuxer (the publisher's ffmpeg after a
reconnect) can join the running stream: PAT, PMT, then a keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = ["PACKET", "TS_CLOCK", "TsRebaser", "TsChunk", "TsEntry"]

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
    """

    joined: bool = False
    pat: bytes | None = None
    pmt: bytes | None = None
    _pmt_pid: int | None = None
    _lead_pid: int | None = None
    _lead_type: int = 0
    _pending: bytes = b""

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
        start = 0 if was_joined else None
        for pos in range(0, whole, PACKET):
            if buf[pos] != SYNC:
                raise ValueError(f"lost MPEG-TS sync at byte {pos}")
            pid = ((buf[pos + 1] & 0x1F) << 8) | buf[pos + 2]
            if pid == 0:
                self._note_pat(buf, pos)
            elif pid == self._pmt_pid:
                self._note_pmt(buf, pos)
            elif start is None and pid == self._lead_pid and self._random_access(buf, pos):
                start = pos
                self.joined = True
        if start is None:
            return b""
        if was_joined:
            return buf[:whole]
        assert self.pat is not None  # the lead PID came from the PMT, the PMT PID from the PAT
        assert self.pmt is not None
        return self.pat + self.pmt + buf[start:whole]

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
