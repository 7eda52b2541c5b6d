"""``TsEntry``: where a new demuxer joins a running MPEG-TS stream, on streams made by ffmpeg."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest

from tgstream.adapters.mpegts import PACKET, TsEntry

GOP = 2.0


def _encode(path: Path, video: bool = True, seconds: float = 6.0) -> bytes:
    """What our sources write: H.264 with a 2 s GOP and AAC, MPEG-TS, one audio frame a PES."""
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    if video:
        argv += ["-f", "lavfi", "-i", f"testsrc2=s=320x240:r=30:d={seconds}"]
    argv += ["-f", "lavfi", "-i", f"sine=f=440:r=48000:d={seconds}"]
    if video:
        argv += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-keyint_min", "60"]
        argv += ["-sc_threshold", "0", "-pix_fmt", "yuv420p"]
    argv += ["-c:a", "aac", "-f", "mpegts", "-muxdelay", "0", "-muxpreload", "0"]
    argv += ["-pes_payload_size", "0", str(path)]
    subprocess.run(argv, check=True, timeout=60)
    return path.read_bytes()


@pytest.fixture(scope="module")
def av_ts(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _encode(tmp_path_factory.mktemp("ts") / "av.ts")


def _packets(path: Path) -> list[dict[str, str]]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_packets", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)["packets"]


def _decode_errors(path: Path) -> str:
    return subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
    ).stderr


def _pid(packet: bytes) -> int:
    return (packet[1] & 0x1F) << 8 | packet[2]


def _join(stream: bytes, cut: int, chunk: int) -> bytes:
    """Feed ``stream`` in ``chunk``-byte pieces; a new demuxer joins at byte ``cut``."""
    entry = TsEntry()
    out = bytearray()
    for pos in range(0, len(stream), chunk):
        if pos <= cut < pos + chunk:
            entry.feed(stream[pos:cut])
            entry.rejoin()
            out += entry.feed(stream[cut : pos + chunk])
        elif pos > cut:
            out += entry.feed(stream[pos : pos + chunk])
        else:
            entry.feed(stream[pos : pos + chunk])
    return bytes(out)


@pytest.mark.parametrize("at", [0.0, 0.3, 1.1, 1.9, 2.5, 3.7])
def test_a_new_demuxer_starts_on_the_next_keyframe_with_pat_and_pmt(
    av_ts: bytes, tmp_path: Path, at: float
) -> None:
    # Cut the stream at about ``at`` seconds, in the middle of a packet and of a GOP.
    cut = int(len(av_ts) * at / 6.0) + 97
    joined = _join(av_ts, cut, chunk=188 * 7 + 5)
    assert len(joined) % PACKET == 0
    assert _pid(joined[:PACKET]) == 0, "must open on the PAT"
    assert _pid(joined[PACKET : 2 * PACKET]) == 0x1000, "then the PMT (ffmpeg's PMT PID)"
    first = joined[2 * PACKET : 3 * PACKET]
    assert _pid(first) == 0x100, "then the video"
    assert first[1] & 0x40, "on the start of a PES"
    out = tmp_path / "joined.ts"
    out.write_bytes(joined)
    video = [p for p in _packets(out) if p["codec_type"] == "video"]
    assert video[0]["flags"].startswith("K"), "the first video packet is a keyframe"
    source = tmp_path / "source.ts"
    source.write_bytes(av_ts)
    keys = [
        float(p["pts_time"])
        for p in _packets(source)
        if p["codec_type"] == "video" and p["flags"].startswith("K")
    ]
    nearest = min(k for k in keys if k >= float(video[0]["pts_time"]) - 1e-3)
    assert float(video[0]["pts_time"]) == pytest.approx(nearest)
    # Everything from that keyframe on is there: no frame lost after the join point.
    all_video = [p for p in _packets(source) if p["codec_type"] == "video"]
    later = [p for p in all_video if float(p["pts_time"]) >= nearest - 1e-3]
    assert len(video) == len(later)
    assert _decode_errors(out) == ""


def test_the_join_point_does_not_depend_on_how_the_stream_is_chunked(av_ts: bytes) -> None:
    cut = len(av_ts) // 3 + 11
    reference = _join(av_ts, cut, chunk=PACKET * 100)
    for chunk in (1, 187, 189, 4096, 65536):
        assert _join(av_ts, cut, chunk) == reference


def test_the_prefixed_tables_continue_the_stream_s_continuity_counters(av_ts: bytes) -> None:
    joined = _join(av_ts, len(av_ts) // 2, chunk=4096)
    for pid in (0, 0x1000):
        counters = [
            joined[p + 3] & 0x0F
            for p in range(0, len(joined), PACKET)
            if _pid(joined[p : p + PACKET]) == pid
        ]
        assert len(counters) > 2
        steps = {(b - a) % 16 for a, b in itertools.pairwise(counters)}
        assert steps == {1}, f"PID {pid:#x}: continuity counters {counters[:6]}"


def test_the_keyframe_is_found_without_the_random_access_flag(av_ts: bytes, tmp_path: Path) -> None:
    # A muxer that sets no random_access_indicator: the IDR (or its SPS) in the PES decides.
    bare = bytearray(av_ts)
    for p in range(0, len(bare), PACKET):
        if bare[p + 3] & 0x20 and bare[p + 4] > 0:
            bare[p + 5] &= ~0x40 & 0xFF
    joined = _join(bytes(bare), len(bare) // 2, chunk=4096)
    out = tmp_path / "joined.ts"
    out.write_bytes(joined)
    video = [p for p in _packets(out) if p["codec_type"] == "video"]
    assert video[0]["flags"].startswith("K")
    assert _decode_errors(out) == ""


def test_audio_only_joins_on_the_next_audio_frame(tmp_path: Path) -> None:
    stream = _encode(tmp_path / "a.ts", video=False, seconds=3.0)
    joined = _join(stream, len(stream) // 2 + 50, chunk=1000)
    assert _pid(joined[2 * PACKET : 3 * PACKET]) == 0x100  # the audio is the first stream
    assert joined[2 * PACKET + 1] & 0x40
    out = tmp_path / "joined.ts"
    out.write_bytes(joined)
    audio = _packets(out)
    assert audio
    assert float(audio[-1]["pts_time"]) - float(audio[0]["pts_time"]) > 1.0
    assert _decode_errors(out) == ""


def test_nothing_passes_before_the_tables_are_known(av_ts: bytes) -> None:
    entry = TsEntry()
    entry.rejoin()
    # Skip the stream's first tables: the keyframe that follows cannot be joined without them.
    start = next(
        p
        for p in range(0, len(av_ts), PACKET)
        if _pid(av_ts[p : p + PACKET]) not in (0, 0x1000, 0x11)
    )
    assert entry.feed(av_ts[start : start + 2 * PACKET]) == b""
    assert not entry.joined


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="sync"):
        TsEntry().feed(b"\x00" * PACKET)


@pytest.mark.parametrize("at", [0.3, 1.1, 2.5])
def test_with_a_gop_limit_a_rejoin_gets_the_current_gop_at_once(
    av_ts: bytes, tmp_path: Path, at: float
) -> None:
    cut = int(len(av_ts) * at / 6.0) + 97
    chunk = 188 * 7 + 5
    entry = TsEntry(gop_limit=4 << 20)
    out = bytearray()
    first: bytes | None = None
    for pos in range(0, len(av_ts), chunk):
        if pos <= cut < pos + chunk:
            entry.feed(av_ts[pos:cut])
            entry.rejoin()
            first = entry.feed(av_ts[cut : pos + chunk])
            out += first
        elif pos > cut:
            out += entry.feed(av_ts[pos : pos + chunk])
        else:
            entry.feed(av_ts[pos : pos + chunk])
    assert first, "the held GOP comes with the first feed after the rejoin"
    assert _pid(out[:PACKET]) == 0 and _pid(out[PACKET : 2 * PACKET]) == 0x1000
    joined = tmp_path / "joined.ts"
    joined.write_bytes(bytes(out))
    video = [p for p in _packets(joined) if p["codec_type"] == "video"]
    source = tmp_path / "source.ts"
    source.write_bytes(av_ts)
    all_video = [p for p in _packets(source) if p["codec_type"] == "video"]
    keys = [float(p["pts_time"]) for p in all_video if p["flags"].startswith("K")]
    assert video[0]["flags"].startswith("K")
    # The keyframe at or before the cut (the GOP's start), not the next one: every frame since.
    assert float(video[0]["pts_time"]) == pytest.approx(max(k for k in keys if k <= at + 1e-3))
    later = [p for p in all_video if float(p["pts_time"]) >= float(video[0]["pts_time"]) - 1e-3]
    assert len(video) == len(later)
    assert _decode_errors(joined) == ""


def test_a_gop_longer_than_the_limit_is_not_held(av_ts: bytes) -> None:
    entry = TsEntry(gop_limit=PACKET * 20)  # far less than a 2 s GOP
    half = len(av_ts) // 2 // PACKET * PACKET
    entry.feed(av_ts[:half])
    entry.rejoin()
    joined = entry.feed(av_ts[half : half + PACKET * 10])
    assert joined == b"" or _pid(joined[2 * PACKET : 3 * PACKET]) == 0x100
