"""``FFMPEG_ARGS`` from ``.env``: parsed shell-style, checked, then dry-run through ffmpeg.

Only encoder tuning belongs there (bitrate, preset, codec, GOP, threads, ...). Options that would
change what ffmpeg reads or writes, or the frame geometry the pipeline relies on, are refused.
A refused value never stops the broadcast: the caller falls back to the quality preset and logs
one WARNING naming the problem.

>>> parse_ffmpeg_args('-b:v 1000k -x264-params "keyint=60:scenecut=0"')
('-b:v', '1000k', '-x264-params', 'keyint=60:scenecut=0')
"""

from __future__ import annotations

import itertools
import shlex
from dataclasses import dataclass
from typing import Final

from tgstream.config import Quality

__all__ = [
    "FfmpegArgsError",
    "FORBIDDEN_OPTIONS",
    "KEYFRAME_SECONDS",
    "SLOW_PRESETS",
    "parse_ffmpeg_args",
    "output_needs",
    "telegram_note",
    "FfmpegArgs",
]

KEYFRAME_SECONDS: Final = 2
"""The pipeline's GOP: a keyframe at least every 2 s (viewers joining, the HLS preview's 2 s
segments, a remuxed track restarting at its keyframe)."""

FORBIDDEN_OPTIONS: Final[dict[str, str]] = {
    "-i": "adds an input",
    "-f": "changes the container format",
    "-y": "overwrites output files",
    "-n": "changes output file handling",
    "-map": "changes which streams are output",
    "-filter_complex": "rewires the filter graph",
    "-lavfi": "rewires the filter graph",
    "-vf": "replaces the scaling filter the pipeline needs",
    "-af": "replaces the audio resampler the pipeline needs",
    "-filter": "replaces the filters the pipeline needs (scaling, resampling)",
    "-s": "changes the frame size set by VIDEO_QUALITY",
    "-r": "changes the frame rate set by VIDEO_QUALITY",
    "-pix_fmt": "changes the pixel format the outputs need",
    "-ar": "changes the audio sample rate the outputs need",
    "-ac": "changes the audio channel count the outputs need",
    "-an": "drops the audio stream",
    "-vn": "drops the video stream",
    "-ss": "seeks the input; the engine manages positions",
    "-sseof": "seeks the input; the engine manages positions",
    "-t": "limits the duration; the engine manages track ends",
    "-to": "limits the duration; the engine manages track ends",
    "-fs": "limits the output size",
    "-re": "changes input pacing; the engine paces output itself",
    "-stream_loop": "loops the input; LOOP controls repetition",
    "-progress": "writes progress to a file or URL",
    "-report": "writes a report file",
    "-attach": "adds an input",
}

_FLAGS_WITHOUT_VALUE: Final = frozenset(
    # ffmpeg's boolean options (OPT_BOOL in fftools/ffmpeg_opt.c): they take no value, and each
    # also has a "-no" form (-nostats, -noautoscale).
    {
        "-shortest",
        "-hide_banner",
        "-stats",
        "-copyts",
        "-start_at_zero",
        "-sn",
        "-dn",
        "-bitexact",
        "-benchmark",
        "-benchmark_all",
        "-stdin",
        "-ignore_unknown",
        "-copy_unknown",
        "-recast_media",
        "-dump",
        "-hex",
        "-debug_ts",
        "-psnr",
        "-vstats",
        "-qphist",
        "-seek_timestamp",
        "-accurate_seek",
        "-copyinkf",
        "-find_stream_info",
        "-autorotate",
        "-autoscale",
        "-force_fps",
        "-fix_sub_duration",
        "-auto_conversion_filters",
    }
)


def _is_flag(token: str) -> bool:
    if token in _FLAGS_WITHOUT_VALUE:
        return True
    return token.startswith("-no") and f"-{token[3:]}" in _FLAGS_WITHOUT_VALUE


class FfmpegArgsError(ValueError):
    """``FFMPEG_ARGS`` is unusable; the message says why and what to change."""


def _is_option(token: str) -> bool:
    if not token.startswith("-") or token == "-":
        return False
    try:  # "-1" is a value, not an option
        float(token)
    except ValueError:
        return True
    return False


def _base(option: str) -> str:
    """The option without its stream specifier: ``-b:v`` -> ``-b``, ``-filter:v:0`` ->
    ``-filter``, so every specifier form of a refused option is refused."""
    return option.split(":", 1)[0]


def parse_ffmpeg_args(raw: str) -> tuple[str, ...]:
    """Split on spaces with double quotes grouping; refuse unsafe or malformed values."""
    lexer = shlex.shlex(raw, posix=True)
    lexer.whitespace_split = True
    lexer.quotes = '"'
    lexer.escape = ""
    lexer.commenters = ""
    try:
        tokens = tuple(lexer)
    except ValueError as exc:
        raise FfmpegArgsError(
            f"FFMPEG_ARGS has unbalanced double quotes ({exc}); close every quote, "
            f'e.g. FFMPEG_ARGS="-b:v 1500k -x264-params \\"keyint=60\\""'
        ) from None
    waiting: str | None = None
    """The option before this token when it still needs its value."""
    for pos, token in enumerate(tokens, start=1):
        if _is_option(token):
            if waiting is not None:
                raise _missing_value(waiting, f"the next token is the option {token!r}")
            option = _base(token)
            if option in FORBIDDEN_OPTIONS:
                raise FfmpegArgsError(
                    f"FFMPEG_ARGS token {pos} {token!r} is not allowed: it "
                    f"{FORBIDDEN_OPTIONS[option]}; remove it and keep to encoder options "
                    "such as -b:v, -maxrate, -bufsize, -preset, -c:v, -g, -threads"
                )
            waiting = None if _is_flag(token) else token
        elif waiting is not None:
            waiting = None
        else:
            raise FfmpegArgsError(
                f"FFMPEG_ARGS token {pos} {token!r} is a bare value with no option before it; "
                "ffmpeg would take it as an output file. Remove it or put its option before it"
            )
    if waiting is not None:
        raise _missing_value(waiting, "it is the last token")
    return tokens


def _missing_value(option: str, why: str) -> FfmpegArgsError:
    example = _EXAMPLES.get(_base(option), "VALUE")
    return FfmpegArgsError(
        f"FFMPEG_ARGS option {option!r} has no value ({why}); give it one, e.g. "
        f"{option} {example}, or remove it"
    )


_EXAMPLES: Final = {
    "-b": "1500k",
    "-maxrate": "1500k",
    "-bufsize": "3000k",
    "-preset": "veryfast",
    "-g": "60",
    "-threads": "2",
    "-crf": "23",
    "-c": "libx264",
    "-codec": "libx264",
    "-profile": "high",
    "-tune": "zerolatency",
}


SLOW_PRESETS: Final[dict[str, float]] = {"slower": 0.6, "veryslow": 0.48, "placebo": 0.16}
"""x264 presets too slow for a live broadcast, with the speed (x real time) each reached encoding
720p30 testsrc2 on a 2-core host (2025-11-30: ``ffmpeg -f lavfi -i testsrc2=s=1280x720:r=30 -t 4
-c:v libx264 -preset P -g 60 -f null -``; veryfast 2.8x, medium 1.5x, slow 0.95x)."""

_VIDEO_CODEC_OPTIONS: Final = ("-c:v", "-codec:v", "-vcodec", "-c", "-codec")
_AUDIO_CODEC_OPTIONS: Final = ("-c:a", "-codec:a", "-acodec", "-c", "-codec")
_RAW_EFFECTIVE: Final = frozenset({"-fps_mode", "-vsync", "-sws_flags", "-filter_threads"})
"""Options that still act on the ``telegram`` output's raw-frame ffmpeg (no encoder there)."""


def _last(args: tuple[str, ...], names: tuple[str, ...]) -> tuple[str, str] | None:
    """The last ``(option, value)`` among ``names`` (ffmpeg lets the last one win)."""
    found = None
    for option, value in itertools.pairwise(args):
        if option in names:
            found = (option, value)
    return found


def _keyint(args: tuple[str, ...]) -> tuple[str, str] | None:
    """The keyframe interval ``-x264-params``/``-x264opts`` set (``keyint=N``), if any."""
    found = None
    for option, value in itertools.pairwise(args):
        if _base(option) in ("-x264-params", "-x264opts"):
            for pair in value.split(":"):
                key, _, number = pair.partition("=")
                if key.strip() == "keyint":
                    found = (f"{option} keyint={number}", number.strip())
    return found


def output_needs(args: tuple[str, ...], q: Quality, output: str) -> str | None:
    """Why ``args`` would break what the ``rtmp``/``preview`` output needs, in the operator's
    words; ``None`` when they fit. (``telegram``: encoder options have no effect, see
    :func:`telegram_note`.)"""
    if output == "telegram":
        return None
    if q.has_video:
        gop = q.fps * KEYFRAME_SECONDS
        for given, value in filter(None, (_last(args, ("-g", "-g:v")), _keyint(args))):
            try:
                frames = int(value)
            except ValueError:
                frames = -1 if value != "infinite" else 1 << 30
            if frames > gop or frames == 0:
                return (
                    f"FFMPEG_ARGS {given}{'' if '=' in given else ' ' + value} puts more than "
                    f"{KEYFRAME_SECONDS} s between keyframes at {q.fps} fps; viewers joining, "
                    f"the HLS preview's {KEYFRAME_SECONDS} s segments and crash recovery need "
                    f"one at least every {KEYFRAME_SECONDS} s: use -g {gop} or less, or drop it"
                )
        preset = _last(args, ("-preset", "-preset:v"))
        if preset is not None and preset[1] in SLOW_PRESETS:
            return (
                f"FFMPEG_ARGS {preset[0]} {preset[1]} is slower than real time (x264 reached "
                f"{SLOW_PRESETS[preset[1]]:g}x real time at 720p on 2 cores): a live broadcast "
                "would fall behind and stall; use a preset from ultrafast to medium"
            )
        codec = _last(args, _VIDEO_CODEC_OPTIONS)
        if codec is not None and "264" not in codec[1]:
            return (
                f"FFMPEG_ARGS {codec[0]} {codec[1]}: OUTPUT={output} carries H.264 video (RTMP's "
                "FLV, browsers' HLS), and the engine itself decides when to copy; use an H.264 "
                "encoder (libx264, h264_nvenc, h264_vaapi, h264_qsv) or drop it"
            )
    codec = _last(args, _AUDIO_CODEC_OPTIONS)
    if codec is not None and codec[1] not in ("aac", "libfdk_aac") and "264" not in codec[1]:
        return (
            f"FFMPEG_ARGS {codec[0]} {codec[1]}: OUTPUT={output} carries AAC audio, and the "
            "engine itself decides when to copy; use aac (or libfdk_aac) or drop it"
        )
    return None


def telegram_note(args: tuple[str, ...]) -> str | None:
    """What ``args`` do on the ``telegram`` output, for ``tgstream check`` and the start-up log.

    There ffmpeg only decodes and writes raw frames and PCM (``-c:v wrapped_avframe -f
    yuv4mpegpipe`` after the operator's options); ntgcalls encodes them for WebRTC, so encoder
    options change nothing.
    """
    if not args:
        return None
    applied: list[str] = []
    ignored: list[str] = []
    pos = 0
    while pos < len(args):
        option = args[pos]
        takes = not _is_flag(option)
        words = " ".join(args[pos : pos + 2 if takes else pos + 1])
        (applied if _base(option) in _RAW_EFFECTIVE else ignored).append(words)
        pos += 2 if takes else 1
    parts = []
    if ignored:
        parts.append(
            f"{', '.join(ignored)}: no effect on OUTPUT=telegram (ntgcalls encodes the raw "
            "frames for WebRTC and picks the bitrate itself; VIDEO_QUALITY sets size and frame "
            "rate)"
        )
    if applied:
        parts.append(f"{', '.join(applied)}: applied to the raw frames")
    return "FFMPEG_ARGS " + "; ".join(parts)


@dataclass(frozen=True, slots=True)
class FfmpegArgs:
    """The args every encoding ffmpeg gets, and the warning if the operator's value was refused.

    ``note`` says, for outputs where the args do not all apply (``telegram``), which do.
    """

    args: tuple[str, ...] = ()
    rejected: str | None = None
    note: str | None = None

    @property
    def custom(self) -> bool:
        return bool(self.args)
