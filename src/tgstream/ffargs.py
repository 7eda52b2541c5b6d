"""``FFMPEG_ARGS`` from ``.env``: parsed shell-style, checked, then dry-run through ffmpeg.

Only encoder tuning belongs there (bitrate, preset, codec, GOP, threads, ...). Options that would
change what ffmpeg reads or writes, or the frame geometry the pipeline relies on, are refused.
A refused value never stops the broadcast: the caller falls back to the quality preset and logs
one WARNING naming the problem.

>>> parse_ffmpeg_args('-b:v 1000k -x264-params "keyint=60:scenecut=0"')
('-b:v', '1000k', '-x264-params', 'keyint=60:scenecut=0')
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Final

__all__ = ["FfmpegArgsError", "FORBIDDEN_OPTIONS", "parse_ffmpeg_args", "FfmpegArgs"]

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
    {
        "-shortest",
        "-hide_banner",
        "-nostats",
        "-stats",
        "-copyts",
        "-start_at_zero",
        "-sn",
        "-dn",
        "-bitexact",
        "-benchmark",
        "-nostdin",
    }
)


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
    expecting_value = False
    for pos, token in enumerate(tokens, start=1):
        if _is_option(token):
            option = _base(token)
            if option in FORBIDDEN_OPTIONS:
                raise FfmpegArgsError(
                    f"FFMPEG_ARGS token {pos} {token!r} is not allowed: it "
                    f"{FORBIDDEN_OPTIONS[option]}; remove it and keep to encoder options "
                    "such as -b:v, -maxrate, -bufsize, -preset, -c:v, -g, -threads"
                )
            expecting_value = token not in _FLAGS_WITHOUT_VALUE
        elif expecting_value:
            expecting_value = False
        else:
            raise FfmpegArgsError(
                f"FFMPEG_ARGS token {pos} {token!r} is a bare value with no option before it; "
                "ffmpeg would take it as an output file. Remove it or put its option before it"
            )
    return tokens


@dataclass(frozen=True, slots=True)
class FfmpegArgs:
    """The args every encoding ffmpeg gets, and the warning if the operator's value was refused."""

    args: tuple[str, ...] = ()
    rejected: str | None = None

    @property
    def custom(self) -> bool:
        return bool(self.args)
