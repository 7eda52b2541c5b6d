"""``TsRebaser`` on hand-built MPEG-TS packets, and on real ffmpeg streams."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tgstream.adapters.mpegts import PACKET, TS_CLOCK, TsRebaser, TsTimeline, TsUnit

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
    """A PES header with its timestamps and ``body`` filler bytes (fits one packet as is)."""
    if dts is None:
        flags, fields = 0x80, encode_ts(pts, 0b0010)
    else:
        flags, fields = 0xC0, encode_ts(pts, 0b0011) + encode_ts(dts, 0b0001)
    header = b"\x00\x00\x01" + bytes([stream_id, 0, 0, 0x80, flags, len(fields)]) + fields
    return header + b"\xab" * body


def packet(
    pid: int, payload: bytes = b"", cc: int = 0, pcr: int | None = None, key: bool = False
) -> bytes:
    """One 188-byte packet; a payload starting with a PES header sets payload_unit_start;
    ``key`` sets the random access indicator (ffmpeg's mark of a keyframe)."""
    start = payload.startswith(b"\x00\x00\x01")
    room = 184 - len(payload)
    if pcr is None and room == 0 and not key:
        afc, adaptation = 0b01, b""
    else:
        fields = b"" if pcr is None else encode_pcr(pcr, ext=123)
        assert room >= 2 + len(fields)
        length = room - 1
        flags = (0x10 if pcr is not None else 0x00) | (0x40 if key else 0x00)
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


OFFSET = 10.0
AT_OFFSET = round(OFFSET * TS_CLOCK)  # 900000


def drain(rebaser: TsRebaser) -> list[TsUnit]:
    units = []
    while (unit := rebaser.pop()) is not None:
        units.append(unit)
    return units


def rebase(rebaser: TsRebaser, data: bytes, eof: bool = True) -> bytes:
    """Push ``data`` (then the end of the source) and join every unit that can be popped."""
    rebaser.push(data)
    if eof:
        rebaser.push(b"")
    return b"".join(u.data for u in drain(rebaser))


def frame(pts: int, dts: int | None = None, key: bool = False, packets: int = 1) -> bytes:
    """A video frame: one PES over ``packets`` packets."""
    first = packet(VIDEO, pes(0xE0, pts, dts), key=key)
    return first + b"".join(packet(VIDEO, b"\x22" * 184) for _ in range(packets - 1))


def sound(pts: int) -> bytes:
    return packet(AUDIO, pes(0xC0, pts), key=True)


# ---- cutting into units -------------------------------------------------------------------


def test_a_read_is_cut_into_units_at_pes_starts_each_with_its_own_dts() -> None:
    pat = bytearray(packet(0x0000, b"\x00" + b"\xff" * 183))
    pat[1] |= 0x40  # payload unit start: a PSI section, which joins the PES after it
    psi = bytes(pat)
    source = (
        psi
        + frame(6_000, 3_000, key=True, packets=3)
        + sound(3_000)
        + frame(12_000, 6_000, packets=2)
        + sound(4_920)
        + packet(VIDEO, pcr=6_000)  # PCR-only: stays with the unit before it
        + frame(9_000, 9_000)
    )
    rebaser = TsRebaser(offset=OFFSET, streams=2)

    rebaser.push(source)
    units = drain(rebaser)
    rebaser.push(b"")
    units += drain(rebaser)

    shift = AT_OFFSET - 3_000
    assert [(u.pid, u.dts, u.pts, len(u.data) // PACKET) for u in units] == [
        (VIDEO, 3_000 + shift, 6_000 + shift, 4),
        (AUDIO, None, 3_000 + shift, 1),
        (VIDEO, 6_000 + shift, 12_000 + shift, 2),
        (AUDIO, None, 4_920 + shift, 2),
        (VIDEO, 9_000 + shift, 9_000 + shift, 1),
    ]
    assert [u.stamp for u in units] == [
        3_000 + shift,
        3_000 + shift,
        6_000 + shift,
        4_920 + shift,
        9_000 + shift,
    ]
    assert [u.key for u in units] == [True, True, False, True, False]
    assert b"".join(u.data for u in units)[4:PACKET] == psi[4:]
    assert rebaser.eof


def test_a_unit_is_handed_out_only_once_the_next_pes_begins_never_mid_frame() -> None:
    rebaser = TsRebaser(offset=OFFSET)
    big = frame(3_000, 3_000, key=True, packets=5)

    rebaser.push(big[: 3 * PACKET])
    assert not rebaser.ready() and rebaser.pop() is None
    rebaser.push(big[3 * PACKET :])
    assert not rebaser.ready()
    rebaser.push(frame(6_000, 6_000))

    (unit,) = drain(rebaser)
    assert len(unit.data) == 5 * PACKET
    assert unit.dts == AT_OFFSET
    assert not rebaser.eof
    rebaser.push(b"")
    (last,) = drain(rebaser)
    assert last.dts == AT_OFFSET + 3_000
    assert rebaser.eof


def test_a_unit_lasts_until_the_next_one_of_its_stream() -> None:
    rebaser = TsRebaser(offset=OFFSET, default_duration=0.01)
    data = sound(0) + sound(1_920) + sound(3_840)

    units = (rebaser.push(data), rebaser.push(b""), drain(rebaser))[2]

    assert [u.duration for u in units] == [900, 1_920, 1_920]  # the first: the default
    assert rebaser.end == (AT_OFFSET + 3_840 + 1_920) / TS_CLOCK


# ---- timestamps ---------------------------------------------------------------------------


def test_offset_shifts_pcr_pts_and_dts_keeping_their_spacing() -> None:
    source = (
        packet(VIDEO, pes(0xE0, pts=129_000, dts=126_000), pcr=126_000)
        + packet(AUDIO, pes(0xC0, pts=127_000))
        + packet(VIDEO, pes(0xE0, pts=135_000, dts=129_000), pcr=129_000)
        + packet(AUDIO, pes(0xC0, pts=128_920))
    )
    rebaser = TsRebaser(offset=OFFSET)

    got = parse(rebase(rebaser, source))

    shift = AT_OFFSET - 126_000  # the earliest timestamp lands on the offset
    assert [(p.pcr, p.pts, p.dts) for p in got] == [
        (126_000 + shift, 129_000 + shift, 126_000 + shift),
        (None, 127_000 + shift, None),
        (129_000 + shift, 135_000 + shift, 129_000 + shift),
        (None, 128_920 + shift, None),
    ]
    assert got[0].pcr == AT_OFFSET
    assert {p.pcr_ext for p in got if p.pcr is not None} == {123}  # the extension is kept


def test_the_first_dts_anchors_the_source_so_b_frames_never_land_before_the_offset() -> None:
    rebaser = TsRebaser(offset=OFFSET)

    video, audio = parse(
        rebase(
            rebaser,
            packet(VIDEO, pes(0xE0, pts=6_000, dts=3_000)) + packet(AUDIO, pes(0xC0, pts=4_200)),
        )
    )

    assert (video.dts, video.pts, audio.pts) == (AT_OFFSET, AT_OFFSET + 3_000, AT_OFFSET + 1_200)


def test_a_timestamp_slightly_before_the_previous_one_is_not_a_26_hour_jump() -> None:
    rebaser = TsRebaser(offset=OFFSET)

    _, audio = parse(
        rebase(rebaser, packet(VIDEO, pes(0xE0, pts=6_000)) + packet(AUDIO, pes(0xC0, pts=4_200)))
    )

    assert audio.pts == AT_OFFSET  # the earliest stamp anchors
    assert _.pts == AT_OFFSET + 1_800


def test_pes_of_streams_without_timestamps_is_left_alone() -> None:
    padding_stream = b"\x00\x00\x01\xbe\x00\x10" + b"\xff" * 120
    rebaser = TsRebaser(offset=OFFSET)

    rebaser.push(packet(VIDEO, padding_stream))
    rebaser.push(b"")
    (unit,) = drain(rebaser)

    assert unit.stamp is None
    assert unit.data[4:] == packet(VIDEO, padding_stream)[4:]


def test_a_source_that_starts_just_before_the_33_bit_wrap_keeps_increasing() -> None:
    first = WRAP - 45_000  # 0.5 s before the wrap
    stamps = [first, WRAP - 9_000, 27_000, 63_000]  # wraps between the 2nd and 3rd
    rebaser = TsRebaser(offset=OFFSET)

    got = parse(rebase(rebaser, b"".join(packet(AUDIO, pes(0xC0, pts=raw)) for raw in stamps)))

    expected = [AT_OFFSET + (raw - first) % WRAP for raw in stamps]
    assert [p.pts for p in got] == expected
    assert rebaser.end is not None
    assert rebaser.end > expected[-1] / TS_CLOCK


def test_rebased_timestamps_past_the_wrap_are_written_modulo_2_33_but_end_is_unwrapped() -> None:
    offset = (WRAP - 90_000) / TS_CLOCK  # lands 1 s before the 33-bit wrap
    rebaser = TsRebaser(offset=offset)

    got = parse(
        rebase(
            rebaser,
            packet(AUDIO, pes(0xC0, pts=0), pcr=0)
            + packet(AUDIO, pes(0xC0, pts=180_000), pcr=180_000),
        )
    )

    assert (got[1].pts, got[1].pcr) == (90_000, 90_000)
    assert rebaser.end == pytest.approx(offset + 4.0)  # 2 s, and the 2 s spacing after it


def test_a_source_running_longer_than_half_the_33_bit_range_keeps_increasing() -> None:
    hour = 3600 * TS_CLOCK
    rebaser = TsRebaser(offset=OFFSET, hole=None)  # an hour between PES: not holes here
    stamps = []

    for n in range(30):  # one PES an hour for 30 h: the source's own PTS wraps at 26.5 h
        rebaser.push(packet(AUDIO, pes(0xC0, pts=n * hour % WRAP)))
        stamps += [u.pts for u in drain(rebaser)]
    rebaser.push(b"")
    stamps += [u.pts for u in drain(rebaser)]

    assert stamps == [AT_OFFSET + n * hour for n in range(30)]


# ---- splicing -----------------------------------------------------------------------------


def gop(first_pts: int, frames: int, delay: int = 6_000, audio_lead: int = 0) -> bytes:
    """A source: a keyframe then P/B frames 3000 ticks apart (PTS ``delay`` after DTS), with
    an audio frame of the same length interleaved after each video frame."""
    out = b""
    for n in range(frames):
        dts = first_pts - delay + n * 3_000
        out += frame(dts + delay, dts, key=n == 0)
        out += sound(first_pts - audio_lead + n * 3_000)
    return out


def test_the_next_source_continues_one_frame_after_the_previous_video_and_dts_only_rise() -> None:
    timeline = TsTimeline()
    first = TsRebaser(offset=OFFSET, timeline=timeline, streams=2)
    second = TsRebaser(offset=99.0, timeline=timeline, streams=2)  # the ends place it, not this

    a = parse(rebase(first, gop(50_000, 10)))
    b = parse(rebase(second, gop(7_000, 10)))

    video_a = [p for p in a if p.pid == VIDEO]
    video_b = [p for p in b if p.pid == VIDEO]
    assert video_b[0].pts == max(p.pts or 0 for p in video_a) + 3_000
    video_dts = [p.dts for p in video_a + video_b]
    assert all(x is not None and y is not None and x < y for x, y in itertools.pairwise(video_dts))
    audio = [p.pts for p in a + b if p.pid == AUDIO]
    assert all(x is not None and y is not None and x < y for x, y in itertools.pairwise(audio))
    assert second.gap == 0.0


def test_audio_that_would_overlap_the_previous_source_is_dropped_frame_by_frame() -> None:
    timeline = TsTimeline()
    first = TsRebaser(offset=OFFSET, timeline=timeline, streams=2)
    second = TsRebaser(offset=0.0, timeline=timeline, streams=2)
    a = parse(rebase(first, gop(50_000, 10)))
    audio_end = max(p.pts or 0 for p in a if p.pid == AUDIO) + 3_000
    video_end = max(p.pts or 0 for p in a if p.pid == VIDEO) + 3_000
    assert audio_end == video_end

    # The second source's audio starts 2.5 frames before its video.
    b = parse(rebase(second, gop(10_000, 10, audio_lead=7_500)))

    assert next(p.pts for p in b if p.pid == VIDEO) == video_end  # the video leads
    first_audio = next(p.pts for p in b if p.pid == AUDIO)
    assert first_audio == audio_end - 1_500  # overlapping by half a frame: kept
    assert second.dropped == 2  # overlapping by 2.5 and 1.5 frames: dropped
    assert second.gap == 0.0


def test_after_a_held_picture_the_slate_picture_continues_after_its_sound_not_late() -> None:
    timeline = TsTimeline()
    track = TsRebaser(offset=OFFSET, timeline=timeline, streams=2)
    a = parse(rebase(track, gop(50_000, 10)))
    held = TsRebaser(offset=0.0, timeline=timeline, streams=2, audio_only=True)
    silence = parse(rebase(held, gop(10_000, 30)))  # 1 s of the slate's sound alone
    slate = TsRebaser(offset=0.0, timeline=timeline, streams=2)

    b = parse(rebase(slate, gop(10_000, 10)))

    video_end = max(p.pts or 0 for p in a if p.pid == VIDEO) + 3_000
    audio_end = max(p.pts or 0 for p in silence if p.pid == AUDIO) + 3_000
    assert audio_end - video_end > TS_CLOCK // 2
    # Its picture starts where the sound is (the held picture is a step), not a second behind
    # it (frames due in the past, sent in a burst), and none of its sound is dropped.
    assert next(p.pts for p in b if p.pid == VIDEO) == audio_end
    assert next(p.pts for p in b if p.pid == AUDIO) == audio_end
    assert slate.dropped == 0
    assert slate.gap == pytest.approx((audio_end - video_end) / TS_CLOCK)


def test_the_timeline_knows_when_the_sound_written_ends_before_the_picture() -> None:
    timeline = TsTimeline()
    source = TsRebaser(offset=OFFSET, timeline=timeline, streams=2)
    source.push(gop(10_000, 4, delay=0))
    units = []
    while (unit := source.pop()) is not None:
        units.append(unit)
        if unit.video and len(units) > 4:
            break  # a picture written, its sound not yet
    assert timeline.sound_behind()
    source.audio_only = True
    source.push(b"")
    rest = drain(source)
    assert rest and not any(u.video for u in rest)
    assert not timeline.sound_behind()


def test_a_source_with_a_longer_b_frame_delay_has_its_first_dts_raised_not_a_hole() -> None:
    timeline = TsTimeline()
    first = TsRebaser(offset=OFFSET, timeline=timeline, streams=2)
    second = TsRebaser(offset=0.0, timeline=timeline, streams=2)
    a = parse(rebase(first, gop(10_000, 5, delay=0)))  # the slate: no B-frames
    b = parse(rebase(second, gop(10_000, 5, delay=6_000)))  # a transcoded track: 2 frames

    video = [p for p in a + b if p.pid == VIDEO]
    assert [(p.pts or 0) - (video[0].pts or 0) for p in video] == [n * 3_000 for n in range(10)]
    dts = [p.dts if p.dts is not None else p.pts for p in video]
    assert all(x is not None and y is not None and x < y for x, y in itertools.pairwise(dts))
    raised = [p.dts for p in b if p.pid == VIDEO][:2]
    last = max(p.pts or 0 for p in a if p.pid == VIDEO)
    assert raised == [last + 90, last + 180]  # 1 ms apart, then the source's own
    assert all(p.dts is None or p.dts <= (p.pts or 0) for p in b)
    assert second.gap == 0.0


def test_the_anchor_drops_what_comes_before_the_first_keyframe() -> None:
    rebaser = TsRebaser(offset=OFFSET, streams=2)
    source = sound(0) + frame(3_000, 3_000) + sound(1_920) + gop(6_000, 3, delay=0)

    units = (rebaser.push(source), rebaser.push(b""), drain(rebaser))[2]

    assert units[0].video and units[0].key
    assert units[0].pts == AT_OFFSET
    assert rebaser.dropped == 3


def test_the_sound_of_the_keyframes_time_muxed_before_it_is_kept() -> None:
    # As the slate's encoder muxes it: two audio frames, the keyframe at the second one's time.
    rebaser = TsRebaser(offset=OFFSET, streams=2)
    source = sound(0) + sound(3_000) + gop(3_000, 3, delay=0)

    units = (rebaser.push(source), rebaser.push(b""), drain(rebaser))[2]

    assert not units[0].video and units[0].pts == AT_OFFSET  # with the keyframe, not after it
    assert units[1].video and units[1].key and units[1].pts == AT_OFFSET
    assert rebaser.dropped == 1  # the audio frame before the keyframe's time


def test_resplice_continues_on_the_next_keyframe_after_what_was_written_meanwhile() -> None:
    timeline = TsTimeline()
    track = TsRebaser(offset=OFFSET, timeline=timeline, streams=2)
    track.push(gop(10_000, 4, delay=0))
    before = drain(track)  # the first GOP, but its last frame is not complete yet
    # The source stalls; the slate fills in: it is written after the track's last unit.
    slate = TsRebaser(offset=0.0, timeline=timeline, streams=2)
    written = parse(rebase(slate, gop(10_000, 6, delay=0)))
    track.resplice()

    track.push(frame(22_000, 22_000) + sound(22_000) + gop(25_000, 3, delay=0))
    track.push(b"")
    after = drain(track)

    assert after[0].video and after[0].key  # the frames before the next keyframe are dropped
    slate_video_end = max(p.pts or 0 for p in written if p.pid == VIDEO) + 3_000
    assert after[0].pts == slate_video_end
    stamps = [u.dts for u in before + after if u.video]
    assert all(x is not None and y is not None and x < y for x, y in itertools.pairwise(stamps))
    assert track.dropped >= 2


def test_after_the_slate_sound_alone_a_source_resumes_on_its_next_frame_nothing_dropped() -> None:
    timeline = TsTimeline()
    track = TsRebaser(offset=OFFSET, timeline=timeline, streams=2)
    track.push(gop(10_000, 4, delay=0))
    before = drain(track)
    # The source stalls; the slate covers the gap with its sound only (the picture holds).
    slate = TsRebaser(offset=0.0, timeline=timeline, streams=2, audio_only=True)
    written = parse(rebase(slate, gop(10_000, 6, delay=0)))
    assert written and all(p.pid != VIDEO for p in written if p.pts is not None)
    track.resplice(keyframe=False)

    track.push(frame(22_000, 22_000) + sound(22_000) + frame(25_000, 25_000) + sound(25_000))
    track.push(b"")
    after = drain(track)

    assert track.dropped == 0
    # Its next frame, not a keyframe (its decoder state is intact), with the sound before it.
    assert [u.video for u in after] == [False, True, False, True, False]
    assert not any(u.key for u in after if u.video)
    sound_end = max(p.pts or 0 for p in written if p.pid == AUDIO) + 3_000
    first_audio = next(u for u in after if u.pid == AUDIO)
    assert first_audio.pts == sound_end  # the sound continues right after the slate's
    video_before = max(u.pts or 0 for u in before if u.video)
    first_video = next(u for u in after if u.video)
    assert first_video.pts is not None and first_video.pts > video_before
    assert track.gap == pytest.approx((first_video.pts - video_before - 3_000) / TS_CLOCK)
    stamps = [u.dts for u in before + after if u.video]
    assert all(x is not None and y is not None and x < y for x, y in itertools.pairwise(stamps))


def test_resplice_drops_the_rest_of_a_high_bitrate_gop_however_many_bytes_it_is() -> None:
    # The e2e pause test's noise clip: ~200 kB per frame, so the 25 frames up to the next
    # keyframe are ~5 MB. A 4 MiB bound on the bytes dropped let the last 4 P-frames through,
    # spliced after the slate without the frames they refer to (ffprobe decoded 3 of them
    # fewer than there were packets).
    timeline = TsTimeline()
    track = TsRebaser(offset=OFFSET, timeline=timeline, streams=2)
    track.push(gop(10_000, 4, delay=0))
    drain(track)
    slate = TsRebaser(offset=0.0, timeline=timeline, streams=2)
    rebase(slate, gop(10_000, 6, delay=0))
    track.resplice()

    big = 1_100  # packets per frame: 25 frames are 5.2 MB
    for n in range(25):
        track.push(frame(22_000 + n * 3_000, packets=big) + sound(22_000 + n * 3_000))
    track.push(gop(97_000, 3, delay=0))
    track.push(b"")
    after = drain(track)

    assert after[0].video and after[0].key, (len(after[0].data), after[0].pts)
    assert track.dropped == 1 + 50  # the first GOP's last audio frame, then 25 frames + audio


def test_a_source_that_flags_no_keyframe_plays_after_20_seconds_of_its_timeline() -> None:
    rebaser = TsRebaser(offset=OFFSET, streams=2)
    frames = 30 * 25  # 25 s at 30 fps, no keyframe flagged
    for n in range(frames):
        rebaser.push(frame(n * 3_000, n * 3_000) + sound(n * 3_000))
    rebaser.push(b"")
    units = drain(rebaser)

    first = next(u for u in units if u.video)
    assert not first.key
    # Dropped up to 20 s of the source, then played on: the rest is not lost behind the slate.
    assert rebaser.dropped == 2 * (20 * 30 + 1)
    assert len([u for u in units if u.video]) == frames - (20 * 30 + 1)


# ---- continuity counters ------------------------------------------------------------------


def test_continuity_counters_are_renumbered_per_pid_across_rebasers() -> None:
    timeline = TsTimeline()
    first = TsRebaser(offset=0.0, timeline=timeline)
    second = TsRebaser(offset=3.0, timeline=timeline)

    a = rebase(
        first,
        packet(VIDEO, pes(0xE0, 0), cc=5)
        + packet(VIDEO, b"\x00" * 184, cc=6)
        + packet(AUDIO, pes(0xC0, 0), cc=9)
        + packet(VIDEO, b"\x00" * 184, cc=7),
    )
    b = rebase(
        second,
        packet(VIDEO, pes(0xE0, 0), cc=0)
        + packet(VIDEO, pcr=100)  # adaptation only: no payload, counter does not advance
        + packet(AUDIO, pes(0xC0, 0), cc=0)
        + packet(NULL, b"\xff" * 184, cc=11)  # null packets are left alone
        + packet(VIDEO, b"\x00" * 184, cc=1),
    )

    assert [(p.pid, p.cc) for p in parse(a)] == [(VIDEO, 0), (VIDEO, 1), (AUDIO, 0), (VIDEO, 2)]
    with_payload = [p for n, p in enumerate(parse(b)) if n != 1]
    assert [(p.pid, p.cc) for p in with_payload] == [
        (VIDEO, 3),
        (AUDIO, 1),
        (NULL, 11),
        (VIDEO, 4),
    ]
    assert timeline.counters == {VIDEO: 4, AUDIO: 1}


def test_continuity_counters_of_units_never_taken_are_not_spent() -> None:
    timeline = TsTimeline()
    slate = TsRebaser(offset=0.0, timeline=timeline)
    slate.push(sound(0) + sound(1_920) + sound(3_840))
    slate.pop()  # one taken; the slate is then dropped with the rest unread
    track = TsRebaser(offset=0.0, timeline=timeline)

    got = parse(rebase(track, sound(0)))

    assert got[0].cc == 1


def test_continuity_counters_wrap_at_16() -> None:
    rebaser = TsRebaser(offset=0.0)

    data = rebase(
        rebaser,
        packet(VIDEO, pes(0xE0, 0), cc=3)
        + b"".join(packet(VIDEO, b"\x00" * 184, cc=3) for _ in range(19)),
    )

    assert [p.cc for p in parse(data)] == [*range(16), *range(4)]
    assert rebaser.timeline.counters == {VIDEO: 3}


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
def test_partial_packets_wait_for_the_next_push_and_nothing_is_lost(cuts: list[int]) -> None:
    data = stream_of(5)
    whole = rebase(TsRebaser(offset=4.0), data)
    rebaser = TsRebaser(offset=4.0)
    bounds = [0, *cuts, len(data)]

    pieces = [rebase(rebaser, data[a:b], eof=False) for a, b in itertools.pairwise(bounds)]
    pieces.append(rebase(rebaser, b""))

    assert all(len(p) % PACKET == 0 for p in pieces)
    assert b"".join(pieces) == whole
    assert len(whole) == len(data)
    assert rebaser.end == pytest.approx(4.0 + 18_000 / TS_CLOCK)  # video: 6000 apart


@pytest.mark.parametrize("broken_at", [0, 1, 3])
def test_lost_sync_raises(broken_at: int) -> None:
    packets = [packet(AUDIO, pes(0xC0, pts=n), cc=n) for n in range(4)]
    packets[broken_at] = b"\x00" + packets[broken_at][1:]

    with pytest.raises(ValueError, match=f"lost MPEG-TS sync at byte {broken_at * PACKET}"):
        TsRebaser(offset=0.0).push(b"".join(packets))


# ---- anchoring ------------------------------------------------------------------------------


def test_the_anchor_waits_for_every_stream_and_takes_the_earliest() -> None:
    # A live source: the first decodable video frame's DTS (B-frames) lies before the audio
    # that comes right after it. Nothing may land before the offset.
    rebaser = TsRebaser(offset=OFFSET, streams=2)
    rebaser.push(packet(VIDEO, pes(0xE0, pts=103_000, dts=94_000), pcr=94_000, key=True))
    assert not rebaser.ready()
    rebaser.push(packet(AUDIO, pes(0xC0, pts=100_000)))
    out = rebase(rebaser, b"")
    video, audio = parse(out)
    assert video.dts == AT_OFFSET
    assert audio.pts == AT_OFFSET + 6_000
    assert video.pts == AT_OFFSET + 9_000
    assert video.pcr == AT_OFFSET


def test_the_anchor_is_taken_from_what_came_when_a_stream_never_shows() -> None:
    rebaser = TsRebaser(offset=OFFSET, streams=2)
    key = frame(5_000, 5_000, key=True)
    video_only = packet(VIDEO, pes(0xE0, pts=8_000, body=160))
    rebaser.push(key)
    n = 0
    while not rebaser.ready():
        rebaser.push(video_only)
        n += 1
    assert n * PACKET >= (4 << 20) - 2 * PACKET
    assert parse(rebaser.pop().data)[0].pts == AT_OFFSET  # type: ignore[union-attr]


def test_the_earliest_stamp_is_found_across_a_wrap() -> None:
    rebaser = TsRebaser(offset=OFFSET, streams=2)
    rebaser.push(packet(VIDEO, pes(0xE0, pts=WRAP - 2_000, dts=WRAP - 5_000), key=True))
    out = rebase(rebaser, packet(AUDIO, pes(0xC0, pts=1_000)))
    video, audio = parse(out)
    assert video.dts == AT_OFFSET
    assert audio.pts == AT_OFFSET + 6_000


# ---- real ffmpeg streams ------------------------------------------------------------------


def encode(rate: int = 30, preset: str = "veryfast", seconds: float = 1.0) -> bytes:
    """An MPEG-TS the way our sources write it (B-frames with veryfast)."""
    return subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=s=320x240:r={rate}:d={seconds}",
            "-f",
            "lavfi",
            "-i",
            f"sine=d={seconds}",
            "-c:v",
            "libx264",
            "-preset",
            preset,
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


def probe_packets(path: Path) -> list[dict[str, str]]:
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_packets", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=30,
        text=True,
    )
    return json.loads(probe.stdout)["packets"]  # type: ignore[no-any-return]


@pytest.mark.ffmpeg
@pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="needs ffmpeg and ffprobe",
)
def test_real_ffmpeg_streams_are_cut_into_frames_and_spliced_seamlessly(tmp_path: Path) -> None:
    sources = [encode(), encode(preset="ultrafast"), encode()]  # B-frames, none, B-frames
    timeline = TsTimeline()
    out, units = b"", []
    for source in sources:
        rebaser = TsRebaser(offset=5.0, timeline=timeline, streams=2)
        for n in range(0, len(source), 1000):
            rebaser.push(source[n : n + 1000])
            units += drain(rebaser)
        rebaser.push(b"")
        units += drain(rebaser)
    out = b"".join(u.data for u in units)
    target = tmp_path / "rebased.ts"
    target.write_bytes(out)

    packets = probe_packets(target)

    pes_units = [u for u in units if u.stamp is not None]
    assert len(pes_units) == len(packets)  # one unit per access unit, none lost
    assert {p["codec_type"] for p in packets} == {"video", "audio"}
    assert min(float(p["dts_time"]) for p in packets) == pytest.approx(5.0, abs=0.001)
    for kind in ("video", "audio"):
        dts = [int(p["dts"]) for p in packets if p["codec_type"] == kind]
        assert all(a < b for a, b in itertools.pairwise(dts)), kind
    video_pts = sorted(int(p["pts"]) for p in packets if p["codec_type"] == "video")
    assert {b - a for a, b in itertools.pairwise(video_pts)} == {3_000}  # no hole at the splices
    assert len(video_pts) == 90


# ---- holes in a source's timeline ---------------------------------------------------------------


def av_stream(seconds: float, start: int = 0) -> bytes:
    """Interleaved video (30 fps, a keyframe first, PCR, B-frames: PTS 2 frames after DTS) and
    audio (48 kHz AAC frames), as ffmpeg muxes them; timestamps from ``start`` (90 kHz ticks)."""
    out, frame, audio = b"", 3_000, 1_920
    events = [(start + i * frame, VIDEO) for i in range(round(seconds * 30))]
    events += [(start + i * audio, AUDIO) for i in range(round(seconds * TS_CLOCK / audio))]
    for n, (stamp, pid) in enumerate(sorted(events)):
        if pid == VIDEO:
            out += packet(VIDEO, pes(0xE0, pts=stamp + 2 * frame, dts=stamp), pcr=stamp, key=n == 0)
        else:
            out += packet(AUDIO, pes(0xC0, pts=stamp))
    return out


def all_stamps(data: bytes) -> list[int]:
    return [s for p in parse(data) for s in (p.pcr, p.dts, p.pts) if s is not None]


def test_a_hole_in_the_source_is_cut_out_and_reported() -> None:
    # 2 s, then the source skips 3 s (a live stream's expired segments), then 2 s more.
    source = av_stream(2.0) + av_stream(2.0, start=5 * TS_CLOCK)
    rebaser = TsRebaser(offset=OFFSET, streams=2)

    out = rebase(rebaser, source)

    ((at, skipped),) = rebaser.holes
    assert at == pytest.approx(2.0, abs=0.1)
    assert skipped == pytest.approx(3.0, abs=0.1)
    video = [p.dts for p in parse(out) if p.pid == VIDEO and p.dts is not None]
    steps = {b - a for a, b in itertools.pairwise(video)}
    assert max(steps) < 2 * 3_000  # no freeze: the next frame follows within two frames
    assert rebaser.end == pytest.approx(OFFSET + 4.0, abs=0.1)


def test_an_interleaved_stream_with_b_frames_has_no_hole() -> None:
    source = av_stream(5.0)
    rebaser = TsRebaser(offset=OFFSET, streams=2)

    out = rebase(rebaser, source)

    assert rebaser.holes == []
    first = all_stamps(source)
    got = all_stamps(out)
    assert [s - got[0] for s in got] == [s - first[0] for s in first]  # spacing untouched
