"""``TsRebaser`` on hand-built MPEG-TS packets, and once on a real ffmpeg stream."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tgstream.adapters.mpegts import PACKET, TS_CLOCK, TsRebaser

VIDEO, AUDIO, NULL = 0x100, 0x101, 0x1FFF
WRAP = 1 << 33


# ---- a tiny MPEG-TS encoder and decoder -------------------------------------------------


def encode_ts(value: int, prefix: int) -> bytes:
    """The 5-byte PTS/DTS field: 4-bit prefix, 33 bits split 3/15/15 with marker bits."""
    assert 0 <= value < WRAP
    return bytes(
        [
            (prefix << 4) | ((value >> 30) & 0x07) << 1 | 1,
            (value >> 22) & 0xFF,
            ((value >> 15) & 0x7F) << 1 | 1,
            (value >> 7) & 0xFF,
            (value & 0x7F) << 1 | 1,
        ]
    )


def decode_ts(b: bytes) -> int:
    assert b[0] & b[2] & b[4] & 1, "marker bits must stay set"
    return (b[0] >> 1 & 0x07) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def encode_pcr(base: int, ext: int = 0) -> bytes:
    return bytes(
        [
            base >> 25 & 0xFF,
            base >> 17 & 0xFF,
            base >> 9 & 0xFF,
            base >> 1 & 0xFF,
            (base & 1) << 7 | 0x7E | ext >> 8,
            ext & 0xFF,
        ]
    )


def pes(stream_id: int, pts: int, dts: int | None = None, body: int = 100) -> bytes:
    if dts is None:
        flags, fields = 0x80, encode_ts(pts, 0b0010)
    else:
        flags, fields = 0xC0, encode_ts(pts, 0b0011) + encode_ts(dts, 0b0001)
    header = b"\x00\x00\x01" + bytes([stream_id, 0, 0, 0x80, flags, len(fields)]) + fields
    return header + b"\xab" * body


def packet(pid: int, payload: bytes = b"", cc: int = 0, pcr: int | None = None) -> bytes:
    """One 188-byte packet; a payload starting with a PES header sets payload_unit_start."""
    start = payload.startswith(b"\x00\x00\x01")
    room = 184 - len(payload)
    if pcr is None and room == 0:
        afc, adaptation = 0b01, b""
    else:
        fields = b"" if pcr is None else encode_pcr(pcr, ext=123)
        assert room >= 2 + len(fields)
        length = room - 1
        flags = 0x10 if pcr is not None else 0x00
        adaptation = bytes([length, flags]) + fields + b"\xff" * (length - 1 - len(fields))
        afc = 0b11 if payload else 0b10
    header = bytes([0x47, (0x40 if start else 0) | pid >> 8, pid & 0xFF, afc << 4 | cc & 0x0F])
    data = header + adaptation + payload
    assert len(data) == PACKET
    return data


@dataclass
class Parsed:
    pid: int
    cc: int
    pcr: int | None = None
    pcr_ext: int | None = None
    pts: int | None = None
    dts: int | None = None


def parse(data: bytes) -> list[Parsed]:
    assert len(data) % PACKET == 0
    out = []
    for pos in range(0, len(data), PACKET):
        p = data[pos : pos + PACKET]
        assert p[0] == 0x47
        info = Parsed(pid=(p[1] & 0x1F) << 8 | p[2], cc=p[3] & 0x0F)
        afc, body = p[3] >> 4 & 0x3, 4
        if afc & 0x2:
            if p[4] >= 7 and p[5] & 0x10:
                raw = p[6:12]
                info.pcr = raw[0] << 25 | raw[1] << 17 | raw[2] << 9 | raw[3] << 1 | raw[4] >> 7
                info.pcr_ext = (raw[4] & 1) << 8 | raw[5]
            body = 5 + p[4]
        if afc & 0x1 and p[1] & 0x40 and p[body : body + 3] == b"\x00\x00\x01":
            flags = p[body + 7] >> 6
            if flags & 0x2:
                info.pts = decode_ts(p[body + 9 : body + 14])
            if flags == 0x3:
                info.dts = decode_ts(p[body + 14 : body + 19])
        out.append(info)
    return out


def test_the_helpers_round_trip() -> None:
    for value in (0, 1, 126_000, WRAP // 2 + 12345, WRAP - 1):
        assert decode_ts(encode_ts(value, 0b0010)) == value
    (info,) = parse(packet(VIDEO, pes(0xE0, 7, 5), cc=9, pcr=WRAP - 1))
    assert (info.pid, info.cc, info.pcr, info.pcr_ext, info.pts, info.dts) == (
        VIDEO,
        9,
        WRAP - 1,
        123,
        7,
        5,
    )


# ---- timestamps ---------------------------------------------------------------------------

OFFSET = 10.0
AT_OFFSET = round(OFFSET * TS_CLOCK)  # 900000


def test_offset_shifts_pcr_pts_and_dts_keeping_their_spacing() -> None:
    source = (
        packet(VIDEO, pes(0xE0, pts=129_000, dts=126_000), pcr=126_000)
        + packet(AUDIO, pes(0xC0, pts=127_000))
        + packet(VIDEO, pes(0xE0, pts=135_000, dts=129_000), pcr=129_000)
        + packet(AUDIO, pes(0xC0, pts=128_920))
    )
    rebaser = TsRebaser(offset=OFFSET)

    chunk = rebaser.feed(source)

    got = parse(chunk.data)
    shift = AT_OFFSET - 126_000  # the first timestamp seen (a PCR) lands on the offset
    assert [(p.pcr, p.pts, p.dts) for p in got] == [
        (126_000 + shift, 129_000 + shift, 126_000 + shift),
        (None, 127_000 + shift, None),
        (129_000 + shift, 135_000 + shift, 129_000 + shift),
        (None, 128_920 + shift, None),
    ]
    assert got[0].pcr == AT_OFFSET
    assert {p.pcr_ext for p in got if p.pcr is not None} == {123}  # the extension is kept
    assert chunk.pts == pytest.approx((135_000 + shift) / TS_CLOCK)
    assert rebaser.end == chunk.pts


def test_the_first_dts_anchors_the_source_so_b_frames_never_land_before_the_offset() -> None:
    rebaser = TsRebaser(offset=OFFSET)

    chunk = rebaser.feed(
        packet(VIDEO, pes(0xE0, pts=6_000, dts=3_000)) + packet(AUDIO, pes(0xC0, pts=4_200))
    )

    video, audio = parse(chunk.data)
    assert (video.dts, video.pts, audio.pts) == (AT_OFFSET, AT_OFFSET + 3_000, AT_OFFSET + 1_200)
    assert chunk.pts == pytest.approx(OFFSET + 3_000 / TS_CLOCK)


def test_a_timestamp_slightly_before_the_previous_one_is_not_a_26_hour_jump() -> None:
    rebaser = TsRebaser(offset=OFFSET)
    rebaser.feed(packet(VIDEO, pes(0xE0, pts=6_000)))

    chunk = rebaser.feed(packet(AUDIO, pes(0xC0, pts=4_200)))

    (audio,) = parse(chunk.data)
    assert audio.pts == AT_OFFSET - 1_800
    assert rebaser.end == OFFSET


def test_chunk_pts_is_the_latest_rebased_pts_and_none_without_a_pes_start() -> None:
    rebaser = TsRebaser(offset=2.0)
    rebaser.feed(packet(VIDEO, pes(0xE0, pts=0)))

    chunk = rebaser.feed(
        packet(VIDEO, pes(0xE0, pts=9_000)) + packet(AUDIO, pes(0xC0, pts=4_500)) + packet(VIDEO)
    )
    continuation = rebaser.feed(packet(VIDEO, b"\x11" * 184) + packet(AUDIO))

    assert chunk.pts == pytest.approx(2.0 + 9_000 / TS_CLOCK)
    assert continuation.pts is None
    assert rebaser.end == chunk.pts


def test_pes_of_streams_without_timestamps_is_left_alone() -> None:
    padding_stream = b"\x00\x00\x01\xbe\x00\x10" + b"\xff" * 120
    rebaser = TsRebaser(offset=OFFSET)

    chunk = rebaser.feed(packet(VIDEO, padding_stream))

    assert chunk.pts is None
    assert chunk.data[4:] == packet(VIDEO, padding_stream)[4:]


def test_a_source_that_starts_just_before_the_33_bit_wrap_keeps_increasing() -> None:
    first = WRAP - 45_000  # 0.5 s before the wrap
    stamps = [first, WRAP - 9_000, 27_000, 63_000]  # wraps between the 2nd and 3rd
    rebaser = TsRebaser(offset=OFFSET)
    ends = []
    written = []

    for raw in stamps:
        chunk = rebaser.feed(packet(AUDIO, pes(0xC0, pts=raw)))
        assert rebaser.end is not None
        ends.append(rebaser.end)
        written.append(parse(chunk.data)[0].pts)

    expected = [AT_OFFSET + (raw - first) % WRAP for raw in stamps]
    assert written == expected
    assert ends == [e / TS_CLOCK for e in expected]
    assert ends == sorted(ends)


def test_rebased_timestamps_past_the_wrap_are_written_modulo_2_33_but_end_is_unwrapped() -> None:
    offset = (WRAP - 90_000) / TS_CLOCK  # lands 1 s before the 33-bit wrap
    rebaser = TsRebaser(offset=offset)

    rebaser.feed(packet(AUDIO, pes(0xC0, pts=0), pcr=0))
    chunk = rebaser.feed(packet(AUDIO, pes(0xC0, pts=180_000), pcr=180_000))

    (got,) = parse(chunk.data)
    assert (got.pts, got.pcr) == (90_000, 90_000)
    assert rebaser.end == pytest.approx(offset + 2.0)


def test_a_source_running_longer_than_half_the_33_bit_range_keeps_increasing() -> None:
    hour = 3600 * TS_CLOCK
    rebaser = TsRebaser(offset=OFFSET, hole=None)  # an hour between PES: not holes here
    pts = []

    for n in range(30):  # one PES an hour for 30 h: the source's own PTS wraps at 26.5 h
        chunk = rebaser.feed(packet(AUDIO, pes(0xC0, pts=n * hour % WRAP)))
        pts.append(chunk.pts)

    assert pts == [OFFSET + n * 3600 for n in range(30)]
    assert rebaser.end == OFFSET + 29 * 3600


# ---- continuity counters ------------------------------------------------------------------


def test_continuity_counters_are_renumbered_per_pid_across_rebasers() -> None:
    counters: dict[int, int] = {}
    first = TsRebaser(offset=0.0, counters=counters)
    second = TsRebaser(offset=3.0, counters=counters)

    a = first.feed(
        packet(VIDEO, pes(0xE0, 0), cc=5)
        + packet(VIDEO, b"\x00" * 184, cc=6)
        + packet(AUDIO, pes(0xC0, 0), cc=9)
        + packet(VIDEO, b"\x00" * 184, cc=7)
    )
    b = second.feed(
        packet(VIDEO, pes(0xE0, 0), cc=0)
        + packet(VIDEO, pcr=100)  # adaptation only: no payload, counter does not advance
        + packet(AUDIO, pes(0xC0, 0), cc=0)
        + packet(NULL, b"\xff" * 184, cc=11)  # null packets are left alone
        + packet(VIDEO, b"\x00" * 184, cc=1)
    )

    assert [(p.pid, p.cc) for p in parse(a.data)] == [
        (VIDEO, 0),
        (VIDEO, 1),
        (AUDIO, 0),
        (VIDEO, 2),
    ]
    with_payload = [p for n, p in enumerate(parse(b.data)) if n != 1]
    assert [(p.pid, p.cc) for p in with_payload] == [
        (VIDEO, 3),
        (AUDIO, 1),
        (NULL, 11),
        (VIDEO, 4),
    ]
    assert counters == {VIDEO: 4, AUDIO: 1}


def test_continuity_counters_wrap_at_16() -> None:
    rebaser = TsRebaser(offset=0.0)

    chunk = rebaser.feed(b"".join(packet(VIDEO, b"\x00" * 184, cc=3) for _ in range(20)))

    assert [p.cc for p in parse(chunk.data)] == [*range(16), *range(4)]
    assert rebaser.counters == {VIDEO: 3}


# ---- framing ------------------------------------------------------------------------------


def stream_of(packets: int) -> bytes:
    return b"".join(
        packet(VIDEO, pes(0xE0, pts=3_000 * n, dts=3_000 * n), cc=n, pcr=3_000 * n)
        if n % 2 == 0
        else packet(AUDIO, pes(0xC0, pts=3_000 * n), cc=n)
        for n in range(packets)
    )


@pytest.mark.parametrize(
    "cuts",
    [
        [1],
        [100, 300],
        [187, 188, 189],
        [PACKET * 2 - 1, PACKET * 2 + 1],
        list(range(7, PACKET * 5, 97)),
    ],
)
def test_partial_packets_wait_for_the_next_feed_and_nothing_is_lost(cuts: list[int]) -> None:
    data = stream_of(5)
    whole = TsRebaser(offset=4.0).feed(data).data
    rebaser = TsRebaser(offset=4.0)
    bounds = [0, *cuts, len(data)]

    pieces = [rebaser.feed(data[a:b]).data for a, b in itertools.pairwise(bounds)]

    assert all(len(p) % PACKET == 0 for p in pieces)
    assert b"".join(pieces) == whole
    assert len(whole) == len(data)
    assert rebaser.end == pytest.approx(4.0 + 12_000 / TS_CLOCK)


def test_feeding_less_than_a_packet_returns_nothing_yet() -> None:
    rebaser = TsRebaser(offset=1.0)
    data = packet(AUDIO, pes(0xC0, pts=0))

    first = rebaser.feed(data[:50])
    second = rebaser.feed(data[50:])

    assert (first.data, first.pts) == (b"", None)
    assert len(second.data) == PACKET
    assert second.pts == 1.0


@pytest.mark.parametrize("broken_at", [0, 1, 3])
def test_lost_sync_raises(broken_at: int) -> None:
    packets = [packet(AUDIO, pes(0xC0, pts=n), cc=n) for n in range(4)]
    packets[broken_at] = b"\x00" + packets[broken_at][1:]

    with pytest.raises(ValueError, match=f"lost MPEG-TS sync at byte {broken_at * PACKET}"):
        TsRebaser(offset=0.0).feed(b"".join(packets))


# ---- a real ffmpeg stream -----------------------------------------------------------------


@pytest.mark.ffmpeg
@pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="needs ffmpeg and ffprobe",
)
def test_real_ffmpeg_stream_is_rebased(tmp_path: Path) -> None:
    source = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x240:r=30:d=1",
            "-f",
            "lavfi",
            "-i",
            "sine=d=1",
            "-c:v",
            "libx264",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
            "-muxdelay",
            "0",
            "-muxpreload",
            "0",
            "-pes_payload_size",
            "0",
            "pipe:1",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    rebaser = TsRebaser(offset=5.0)
    out = b"".join(rebaser.feed(source[n : n + 1000]).data for n in range(0, len(source), 1000))
    assert len(out) == len(source)
    target = tmp_path / "rebased.ts"
    target.write_bytes(out)

    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_packets", "-of", "json", str(target)],
        capture_output=True,
        check=True,
        timeout=30,
        text=True,
    )

    packets = json.loads(probe.stdout)["packets"]
    assert {p["codec_type"] for p in packets} == {"video", "audio"}
    assert min(float(p["pts_time"]) for p in packets) >= 5.0 - 0.1
    assert min(float(p["pts_time"]) for p in packets) <= 5.0 + 0.1
    for stream in {p["stream_index"] for p in packets}:
        dts = [int(p["dts"]) for p in packets if p["stream_index"] == stream]
        assert all(a < b for a, b in itertools.pairwise(dts)), f"stream {stream}"
    assert rebaser.end is not None
    assert 5.8 < rebaser.end < 6.2


def test_the_anchor_waits_for_every_stream_and_takes_the_earliest() -> None:
    # A live source: audio arrives first, then the first decodable video frame, whose DTS
    # (B-frames) lies before that audio. Nothing may land before the offset.
    rebaser = TsRebaser(offset=OFFSET, streams=2)
    held = rebaser.feed(packet(AUDIO, pes(0xC0, pts=100_000)))
    assert (held.data, held.pts) == (b"", None)
    out = rebaser.feed(packet(VIDEO, pes(0xE0, pts=103_000, dts=94_000), pcr=94_000))
    audio, video = parse(out.data)
    assert video.dts == AT_OFFSET
    assert audio.pts == AT_OFFSET + 6_000
    assert video.pts == AT_OFFSET + 9_000
    assert video.pcr == AT_OFFSET
    assert out.pts == (AT_OFFSET + 9_000) / TS_CLOCK


def test_the_anchor_is_taken_from_what_came_when_a_stream_never_shows() -> None:
    rebaser = TsRebaser(offset=OFFSET, streams=2)
    audio_only = packet(AUDIO, pes(0xC0, pts=5_000, body=160))
    chunks = [rebaser.feed(audio_only) for _ in range((4 << 20) // PACKET + 1)]
    assert all(c.data == b"" for c in chunks[:-1])
    first = parse(chunks[-1].data)[0]
    assert first.pts == AT_OFFSET


def test_the_earliest_stamp_is_found_across_a_wrap() -> None:
    rebaser = TsRebaser(offset=OFFSET, streams=2)
    rebaser.feed(packet(AUDIO, pes(0xC0, pts=1_000)))
    out = rebaser.feed(packet(VIDEO, pes(0xE0, pts=WRAP - 2_000, dts=WRAP - 5_000)))
    audio, video = parse(out.data)
    assert video.dts == AT_OFFSET
    assert audio.pts == AT_OFFSET + 6_000


# ---- holes in a source's timeline ---------------------------------------------------------------


def av_stream(seconds: float, start: int = 0) -> bytes:
    """Interleaved video (30 fps, PCR, B-frames: PTS 2 frames after DTS) and audio (48 kHz
    AAC frames), as ffmpeg muxes them; timestamps from ``start`` (90 kHz ticks)."""
    out, frame, audio = b"", 3_000, 1_920
    events = [(start + i * frame, VIDEO) for i in range(round(seconds * 30))]
    events += [(start + i * audio, AUDIO) for i in range(round(seconds * TS_CLOCK / audio))]
    for stamp, pid in sorted(events):
        if pid == VIDEO:
            out += packet(VIDEO, pes(0xE0, pts=stamp + 2 * frame, dts=stamp), pcr=stamp)
        else:
            out += packet(AUDIO, pes(0xC0, pts=stamp))
    return out


def stamps(data: bytes) -> list[int]:
    return [s for p in parse(data) for s in (p.pcr, p.dts, p.pts) if s is not None]


def test_a_hole_in_the_source_is_cut_out_and_reported() -> None:
    # 2 s, then the source skips 3 s (a live stream's expired segments), then 2 s more.
    source = av_stream(2.0) + av_stream(2.0, start=5 * TS_CLOCK)
    rebaser = TsRebaser(offset=OFFSET, streams=2)

    out = rebaser.feed(source).data

    ((at, skipped),) = rebaser.holes
    assert at == pytest.approx(2.0, abs=0.1)
    assert skipped == pytest.approx(3.0, abs=0.1)
    video = [p.dts for p in parse(out) if p.pid == VIDEO and p.dts is not None]
    steps = {b - a for a, b in itertools.pairwise(video)}
    assert max(steps) < 2 * 3_000  # no freeze: the next frame follows within two frames
    assert rebaser.end == pytest.approx(OFFSET + 4.0 + 2 / 30, abs=0.05)


def test_an_interleaved_stream_with_b_frames_has_no_hole() -> None:
    rebaser = TsRebaser(offset=OFFSET, streams=2)

    out = rebaser.feed(av_stream(5.0)).data

    assert rebaser.holes == []
    first = stamps(av_stream(5.0))
    got = stamps(out)
    assert [s - got[0] for s in got] == [s - first[0] for s in first]  # spacing untouched
