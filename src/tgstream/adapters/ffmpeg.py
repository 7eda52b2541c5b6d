"""ffmpeg command lines: per-track sources (MPEG-TS or raw frames), the slate, the publisher.

Every command is built here and nowhere else, so ``tgstream check``, the engine and the
benchmarks run exactly the same ffmpeg invocations.

Stream layout of every MPEG-TS source: video PID 0x100 then audio PID 0x101 (ffmpeg's
defaults for ``-map`` order), so sources can be spliced by :mod:`tgstream.adapters.mpegts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Final, Literal

from opskit.procs import Children
from tgstream.adapters.probe import Prober, header_args
from tgstream.config import Quality
from tgstream.domain.track import MediaInfo, Track
from tgstream.ffargs import (
    KEYFRAME_SECONDS,
    FfmpegArgs,
    FfmpegArgsError,
    output_needs,
    parse_ffmpeg_args,
    telegram_note,
)

__all__ = [
    "Recipe",
    "source_argv",
    "slate_argv",
    "publisher_argv",
    "can_remux",
    "plan_remux",
    "check_ffmpeg_args",
    "SLATE_TEXT",
]

log = logging.getLogger(__name__)

Recipe = Literal["ts", "raw"]
SLATE_TEXT: Final = "Technical break"
_FONT: Final = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
_BASE: Final = ("ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error")
_KEYFRAME_SECONDS: Final = KEYFRAME_SECONDS
_FILE_GOP_WINDOW: Final = 12.0
_LIVE_GOP_WINDOW: Final = 5.0
# One audio frame per PES (pes_payload_size 0): PES timestamps are then frame-accurate, and a
# spliced track can start right after the previous one's last audio frame without overlap.
_TS_OUT: Final = (
    "-f",
    "mpegts",
    "-muxdelay",
    "0",
    "-muxpreload",
    "0",
    "-pes_payload_size",
    "0",
    "pipe:1",
)

# The raw recipe's video: I420 in YUV4MPEG2 framing (feeds.RawFeed reads it). Its muxer writes
# the decoded planes as they are; the rawvideo encoder would first copy each frame into a packet.
_Y4M_OUT: Final = ("-c:v", "wrapped_avframe", "-f", "yuv4mpegpipe", "pipe:3")
# Raw frames are scaled (when the source is of another size) with bilinear, not swscale's
# bicubic default: about 5% less ffmpeg CPU for a 1080p source on the 720p preset, at 44.9 dB
# PSNR / 0.997 SSIM against a lanczos reference (bicubic: 54.7 dB / 0.9997; fast_bilinear saves
# twice as much at 38.5 dB / 0.993), before ntgcalls' own lossy encoding; docs/benchmarks.md.
_RAW_SCALER: Final = "bilinear"
_ONE_THREAD_PIXELS: Final = 1920 * 1088


def _video_options(q: Quality, info: MediaInfo, scaler: str = "bicubic") -> list[str]:
    """Frame rate and pixel format as output options (cheap: ffmpeg drops, duplicates and
    converts only when it must); scale (with swscale's ``scaler``) and letterbox only a source
    of another size.

    ``-fps_mode cfr`` converts the frame rate: a 25 fps source comes out as regular 1/30 s
    frames (every fifth one repeated). Without it the MPEG-TS muxer, which takes variable
    rates, would only round each frame's time onto the 30 fps grid: steps of 33 and 67 ms."""
    options = ["-r", str(q.fps), "-fps_mode", "cfr", "-pix_fmt", "yuv420p"]
    if info.has_video and (info.width, info.height) != (q.width, q.height):
        box = (
            f"scale={q.width}:{q.height}:force_original_aspect_ratio=decrease:flags={scaler},"
            f"pad={q.width}:{q.height}:-1:-1:color=black,setsar=1"
        )
        options = ["-vf", box, *options]
    return options


_AUDIO_FILTER: Final = "aresample=async=1:first_pts=0"


def _encode(q: Quality, ffargs: FfmpegArgs) -> list[str]:
    """H.264/AAC with a keyframe every 2 s; FFMPEG_ARGS come last so they override defaults."""
    args = [
        "-c:a",
        "aac",
        "-b:a",
        f"{q.audio_kbps}k",
        "-ar",
        str(q.sample_rate),
        "-ac",
        str(q.channels),
    ]
    if q.has_video:
        gop = str(q.fps * _KEYFRAME_SECONDS)
        args = [
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
            "-b:v",
            f"{q.video_kbps}k",
            "-maxrate",
            f"{q.video_kbps}k",
            "-bufsize",
            f"{q.video_kbps * 2}k",
            "-g",
            gop,
            "-keyint_min",
            gop,
            "-sc_threshold",
            "0",
            *args,
        ]
    return [*args, *ffargs.args]


def can_remux(info: MediaInfo, q: Quality, ffargs: FfmpegArgs) -> bool:
    """Copy without re-encoding only when the source already is what the output needs."""
    if ffargs.custom or not q.has_video or not info.has_video or not info.has_audio:
        return False
    return (
        info.vcodec == "h264"
        and info.pix_fmt in ("yuv420p", "yuvj420p")
        and (info.width, info.height) == (q.width, q.height)
        and abs(info.fps - q.fps) < 0.01
        and info.acodec == "aac"
        and info.sample_rate in (44_100, 48_000)
        and 1 <= info.channels <= 2
        and info.max_keyframe_interval is not None
        and info.max_keyframe_interval <= _KEYFRAME_SECONDS + 0.05
    )


async def plan_remux(
    track: Track,
    q: Quality,
    ffargs: FfmpegArgs,
    prober: Prober,
    scan: asyncio.Task[float | None] | None = None,
) -> tuple[Track, bool]:
    """Whether ``track`` can be copied as it is; measures its keyframe interval only when
    everything else already fits (it costs a scan of the first seconds). ``scan``: that
    measure started earlier (beside the probe, see :func:`scan_keyframes`); cancelled when
    not needed."""
    if not can_remux(replace(track.info, max_keyframe_interval=0.0), q, ffargs):
        if scan is not None:
            scan.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scan  # its ffprobe is killed and reaped
        return track, False
    gop = await (scan or scan_keyframes(prober, track.url, track.headers, track.info.live))
    track = replace(track, info=replace(track.info, max_keyframe_interval=gop))
    return track, can_remux(track.info, q, ffargs)


def scan_keyframes(
    prober: Prober, url: str, headers: Sequence[tuple[str, str]] = (), live: bool = False
) -> asyncio.Task[float | None]:
    """The keyframe scan :func:`plan_remux` needs, as a task (it may start before the probe
    has answered). A live stream is scanned in real time: a shorter window still spans two
    2 s GOPs."""
    window = _LIVE_GOP_WINDOW if live else _FILE_GOP_WINDOW
    return asyncio.create_task(
        prober.max_keyframe_interval(url, headers, window), name=f"keyframes:{url}"
    )


def _inputs(track: Track, q: Quality, start: float) -> tuple[list[str], str | None, str | None]:
    """Input options, plus the ``-map`` specifiers for video and audio (None when dropped)."""
    seek = ["-ss", f"{start:.3f}"] if start > 0 and not track.info.live else []
    http = (
        ["-reconnect", "1", "-reconnect_streamed", "1", "-reconnect_delay_max", "4"]
        if track.url.startswith(("http://", "https://")) and not track.info.live
        else []
    )
    argv = [*seek, *http, *header_args(track.headers, track.url), "-i", track.url]
    n = 1
    audio_map: str | None = None
    if track.audio_url:
        argv += [*seek, *http, *header_args(track.headers, track.audio_url), "-i", track.audio_url]
        audio_map, n = "1:a:0", 2
    elif track.info.has_audio:
        audio_map = "0:a:0"
    if audio_map is None:
        argv += ["-f", "lavfi", "-i", f"anullsrc=r={q.sample_rate}:cl=stereo"]
        audio_map, n = f"{n}:a:0", n + 1
    video_map: str | None = None
    if q.has_video:
        if track.info.has_video:
            video_map = "0:v:0"
        else:  # audio-only source on a video output: a black picture
            argv += ["-f", "lavfi", "-i", f"color=c=black:s={q.width}x{q.height}:r={q.fps}"]
            video_map = f"{n}:v:0"
    return argv, video_map, audio_map


def source_argv(
    track: Track,
    q: Quality,
    ffargs: FfmpegArgs,
    recipe: Recipe,
    start: float = 0.0,
    remux: bool = False,
) -> list[str]:
    """The ffmpeg that plays one track from ``start`` seconds.

    ``ts``: MPEG-TS on stdout (copied when ``remux``, else H.264/AAC). ``raw``: I420 frames
    (YUV4MPEG2) on fd 3 and s16le PCM on fd 4, at the quality's size, rate and sample rate.
    """
    inputs, vmap, amap = _inputs(track, q, start)
    argv = [*_BASE, *inputs]
    assert amap is not None
    generated = (not track.info.has_audio and not track.audio_url) or (
        q.has_video and not track.info.has_video
    )
    if recipe == "raw":
        if vmap == "0:v:0" and 0 < track.info.width * track.info.height <= _ONE_THREAD_PIXELS:
            # One decoding thread: frame threads cost ~6% more CPU at real-time pace (they wake
            # and sync per frame), and one core decodes a 1080p H.264 several times faster
            # than real time (here: 174 fps while busy). Larger sources keep ffmpeg's threads.
            argv[len(_BASE) : len(_BASE)] = ["-threads", "1"]
        if vmap:
            argv += [
                "-map",
                vmap,
                *ffargs.args,
                *_video_options(q, track.info, _RAW_SCALER),
                *_Y4M_OUT,
            ]
        argv += [
            "-map",
            amap,
            *ffargs.args,
            "-af",
            _AUDIO_FILTER,
            "-f",
            "s16le",
            "-c:a",
            "pcm_s16le",
            "-ar",
            str(q.sample_rate),
            "-ac",
            str(q.channels),
            # A file's PCM in 32 KiB writes rather than one per 4 KiB packet: 1/8 of the
            # wakeups on both sides. The video read ahead (>= 8 frames, 267 ms) always exceeds
            # the 170 ms so held, so audio never waits for it; a live source flushes as it comes.
            *([] if track.info.live else ["-flush_packets", "0"]),
            "pipe:4",
        ]
        return argv + (["-shortest"] if generated else [])
    maps = (["-map", vmap] if vmap else []) + ["-map", amap]
    if remux:
        return [*argv, *maps, "-c", "copy", *_TS_OUT]
    codec = (_video_options(q, track.info) if vmap else []) + ["-af", _AUDIO_FILTER]
    return [
        *argv,
        *maps,
        *codec,
        *_encode(q, ffargs),
        *(["-shortest"] if generated else []),
        *_TS_OUT,
    ]


def _slate_inputs(q: Quality, text: str) -> list[str]:
    argv = ["-f", "lavfi", "-i", f"anullsrc=r={q.sample_rate}:cl=stereo"]
    if q.has_video:
        video = f"color=c=0x14213d:s={q.width}x{q.height}:r={q.fps}"
        if _FONT.exists():
            video += (
                f",drawtext=fontfile={_FONT}:text='{text}':fontcolor=white"
                f":fontsize={max(q.height // 12, 12)}:x=(w-tw)/2:y=(h-th)/2"
            )
        argv = ["-f", "lavfi", "-i", video, *argv]
    return argv


def slate_argv(q: Quality, ffargs: FfmpegArgs, recipe: Recipe, text: str = SLATE_TEXT) -> list[str]:
    """An endless "technical break" picture with silence, in the same format as the sources."""
    argv = [*_BASE, *_slate_inputs(q, text)]
    vmap, amap = ("0:v", "1:a") if q.has_video else (None, "0:a")
    if recipe == "raw":
        if vmap:
            argv += ["-map", vmap, "-pix_fmt", "yuv420p", *_Y4M_OUT]
        return [
            *argv,
            "-map",
            amap,
            "-f",
            "s16le",
            "-ar",
            str(q.sample_rate),
            "-ac",
            str(q.channels),
            "pipe:4",
        ]
    maps = (["-map", vmap] if vmap else []) + ["-map", amap]
    return [*argv, *maps, *_encode(q, _slate_tuning(ffargs)), *_TS_OUT]


def _slate_tuning(ffargs: FfmpegArgs) -> FfmpegArgs:
    """A still picture needs no lookahead and one thread: the slate is spawned after every use,
    and this makes that nearly free. Skipped when FFMPEG_ARGS picks another encoder."""
    if any(a.split(":")[0] in ("-c", "-codec", "-vcodec") for a in ffargs.args):
        return ffargs
    tuning = ("-preset", "ultrafast", "-tune", "stillimage,zerolatency", "-threads", "1")
    return FfmpegArgs((*tuning, *ffargs.args))


def publisher_argv(target: Literal["rtmp", "hls"], destination: str) -> list[str]:
    """The one long-lived ffmpeg that copies the spliced MPEG-TS to RTMP (FLV) or HLS.

    Its input always opens on PAT, PMT and a keyframe (:class:`~tgstream.adapters.mpegts.TsEntry`)
    and carries our own two streams, so the probe needs the first few frames only: 0.2 s of
    stream, which the engine's lead has already written. Every probed packet is kept (no
    ``nobuffer``: it discarded them, and with them the stream's first GOP). ``-progress`` on
    stdout tells the publisher when the destination has accepted the stream and packets flow.
    """
    argv = [
        *_BASE[:-1],
        "warning",
        "-progress",
        "pipe:1",
        "-stats_period",
        "0.25",
        "-fflags",
        "+genpts",
        "-probesize",
        "4000000",
        "-analyzeduration",
        "200000",
        "-f",
        "mpegts",
        "-i",
        "pipe:0",
        "-map",
        "0",
        "-c",
        "copy",
    ]
    if target == "rtmp":
        return [*argv, "-f", "flv", "-flvflags", "no_duration_filesize", destination]
    out = Path(destination)
    return [
        *argv,
        "-f",
        "hls",
        "-hls_time",
        "2",
        "-hls_list_size",
        "8",
        "-hls_flags",
        "delete_segments+omit_endlist+temp_file+independent_segments",
        "-hls_segment_filename",
        str(out.parent / "seg%06d.ts"),
        str(out),
    ]


async def check_ffmpeg_args(
    raw: str, q: Quality, children: Children, output: str = "rtmp"
) -> FfmpegArgs:
    """Parse ``FFMPEG_ARGS``, check them against what ``output`` needs (the 2 s GOP, real-time
    speed, its codecs), and dry-run them on a tiny generated input.

    Never raises for a bad value: returns ``FfmpegArgs(rejected=...)`` so the caller falls back
    to the preset and logs one WARNING. For ``telegram``, ``note`` says which options apply.
    """
    if not raw.strip():
        return FfmpegArgs()
    try:
        args = FfmpegArgs(parse_ffmpeg_args(raw))
    except FfmpegArgsError as exc:
        return FfmpegArgs(rejected=str(exc))
    # The slate's own command line: the same encoder options every transcoding source gets.
    dry = [*slate_argv(q, args, "ts")[: -len(_TS_OUT)], "-t", "0.3", "-f", "null", "-"]
    code, _, err = await children.run(dry, timeout=30)
    if code != 0:
        detail = err.decode(errors="replace").strip().splitlines()
        return FfmpegArgs(
            rejected=f"ffmpeg refused FFMPEG_ARGS in a dry run: "
            f"{detail[-1] if detail else f'exit code {code}'}; "
            "check the option names and values with `ffmpeg -h full`"
        )
    refused = output_needs(args.args, q, output)  # after ffmpeg's verdict on names and values
    if refused is not None:
        return FfmpegArgs(rejected=refused)
    if output == "telegram":
        return FfmpegArgs(args.args, note=telegram_note(args.args))
    return args
