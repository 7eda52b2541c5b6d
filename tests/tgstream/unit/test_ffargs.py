"""``FFMPEG_ARGS`` parsing: shell-style splitting, refused options, bare values."""

from __future__ import annotations

import pytest

from tgstream.config import QUALITY_PRESETS
from tgstream.ffargs import (
    FORBIDDEN_OPTIONS,
    FfmpegArgs,
    FfmpegArgsError,
    output_needs,
    parse_ffmpeg_args,
    telegram_note,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ()),
        ("   ", ()),
        ("-b:v 1500k", ("-b:v", "1500k")),
        ("  -g   60\t-threads 2 ", ("-g", "60", "-threads", "2")),
        (
            '-b:v 1000k -x264-params "keyint=60:scenecut=0"',
            ("-b:v", "1000k", "-x264-params", "keyint=60:scenecut=0"),
        ),
        ('-metadata title="two words"', ("-metadata", "title=two words")),
        ("-qp -1", ("-qp", "-1")),
        ("-qp -1 -preset fast", ("-qp", "-1", "-preset", "fast")),
        ("-crf -1.5", ("-crf", "-1.5")),
        ("-shortest -b:v 900k", ("-shortest", "-b:v", "900k")),
        ("-b:v 900k -shortest", ("-b:v", "900k", "-shortest")),
        ("-bitexact -nostats -maxrate 2M", ("-bitexact", "-nostats", "-maxrate", "2M")),
        ("-c:v libx264 -profile:v main", ("-c:v", "libx264", "-profile:v", "main")),
        ("-b:a 192k -c:a aac", ("-b:a", "192k", "-c:a", "aac")),
        ("-x264opts x=1#2", ("-x264opts", "x=1#2")),  # '#' is not a comment here
    ],
)
def test_valid_values_parse(raw: str, expected: tuple[str, ...]) -> None:
    assert parse_ffmpeg_args(raw) == expected


@pytest.mark.parametrize("raw", ['-x264-params "keyint=60', '-b:v 1M -metadata "a=b" "c'])
def test_unbalanced_quotes_are_refused(raw: str) -> None:
    with pytest.raises(FfmpegArgsError, match="unbalanced double quotes"):
        parse_ffmpeg_args(raw)


@pytest.mark.parametrize("option", sorted(FORBIDDEN_OPTIONS))
def test_every_forbidden_option_is_refused_with_its_position(option: str) -> None:
    with pytest.raises(FfmpegArgsError) as caught:
        parse_ffmpeg_args(f"-b:v 900k {option} 1")

    message = str(caught.value)
    assert f"token 3 {option!r} is not allowed" in message
    assert FORBIDDEN_OPTIONS[option] in message


@pytest.mark.parametrize(
    ("token", "base"),
    [
        ("-map:0", "-map"),
        ("-f:v", "-f"),
        ("-s:v", "-s"),
        ("-r:v:0", "-r"),
        ("-pix_fmt:v", "-pix_fmt"),
        ("-ar:a", "-ar"),
        ("-ac:a:0", "-ac"),
        ("-t:0", "-t"),
        ("-filter:v", "-filter"),
        ("-filter:a", "-filter"),
        ("-vf:0", "-vf"),
    ],
)
def test_stream_specifier_forms_of_forbidden_options_are_refused(token: str, base: str) -> None:
    with pytest.raises(FfmpegArgsError) as caught:
        parse_ffmpeg_args(f"-preset fast {token} x")

    message = str(caught.value)
    assert f"token 3 {token!r} is not allowed" in message
    assert FORBIDDEN_OPTIONS[base] in message


@pytest.mark.parametrize("raw", ["-b:v 900k", "-b:a 128k", "-bufsize:v 2M", "-c:v libx264"])
def test_stream_specifiers_of_allowed_options_stay_allowed(raw: str) -> None:
    assert parse_ffmpeg_args(raw) == tuple(raw.split())


@pytest.mark.parametrize("raw", ["-filter:v:0 scale=16:16", "-filter scale=16:16"])
def test_filter_options_with_other_specifiers_are_refused(raw: str) -> None:
    with pytest.raises(FfmpegArgsError, match="not allowed"):
        parse_ffmpeg_args(raw)


@pytest.mark.parametrize(
    ("raw", "position", "token"),
    [
        ("out.mp4", 1, "out.mp4"),
        ("-b:v 900k 1200k", 3, "1200k"),
        ("-shortest out.mp4", 2, "out.mp4"),
        ('-preset fast "quoted value"', 3, "quoted value"),
    ],
)
def test_a_bare_value_without_an_option_is_refused(raw: str, position: int, token: str) -> None:
    with pytest.raises(FfmpegArgsError) as caught:
        parse_ffmpeg_args(raw)

    message = str(caught.value)
    assert f"token {position} {token!r} is a bare value" in message
    assert "output file" in message


def test_errors_are_value_errors() -> None:
    assert issubclass(FfmpegArgsError, ValueError)


@pytest.mark.parametrize(
    ("ffargs", "custom"),
    [
        (FfmpegArgs(), False),
        (FfmpegArgs(rejected="refused"), False),
        (FfmpegArgs(("-b:v", "900k")), True),
    ],
)
def test_custom_means_args_are_in_force(ffargs: FfmpegArgs, custom: bool) -> None:
    assert ffargs.custom is custom


# ---- an option without its value -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "option", "why"),
    [
        ("-b:v", "-b:v", "it is the last token"),
        ("-preset fast -b:v", "-b:v", "it is the last token"),
        ("-b:v -preset fast", "-b:v", "the next token is the option '-preset'"),
        ("-maxrate 2M -g", "-g", "it is the last token"),
    ],
)
def test_an_option_without_its_value_is_refused_by_name(raw: str, option: str, why: str) -> None:
    with pytest.raises(FfmpegArgsError) as caught:
        parse_ffmpeg_args(raw)

    message = str(caught.value)
    assert f"option {option!r} has no value ({why})" in message
    assert f"e.g. {option} " in message


@pytest.mark.parametrize(
    "raw", ["-nostats -b:v 1M", "-noautoscale -g 60", "-copyts -shortest", "-b:v 1M -bitexact"]
)
def test_flags_take_no_value(raw: str) -> None:
    assert parse_ffmpeg_args(raw) == tuple(raw.split())


# ---- what the output needs ----------------------------------------------------------------------

Q720 = QUALITY_PRESETS["720p"]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("-g 600", "-g 600 puts more than 2 s between keyframes at 30 fps"),
        ("-g:v 61", "-g:v 61 puts more than 2 s"),
        ('-x264-params "scenecut=0:keyint=300"', "-x264-params keyint=300 puts more than 2 s"),
        ("-x264opts keyint=infinite", "keyint=infinite puts more than 2 s"),
        ("-preset placebo", "-preset placebo is slower than real time"),
        ("-preset:v veryslow", "-preset:v veryslow is slower than real time"),
        ("-preset slower -b:v 2M", "-preset slower is slower than real time"),
        ("-c:v libx265", "-c:v libx265: OUTPUT=rtmp carries H.264 video"),
        ("-c:v copy", "the engine itself decides when to copy"),
        ("-c:a libopus", "-c:a libopus: OUTPUT=rtmp carries AAC audio"),
    ],
)
def test_options_that_break_the_output_are_refused_in_words(raw: str, words: str) -> None:
    message = output_needs(parse_ffmpeg_args(raw), Q720, "rtmp")

    assert message is not None
    assert words in message


@pytest.mark.parametrize(
    "raw",
    [
        "-g 60",
        "-g 30 -keyint_min 30",
        '-x264-params "keyint=60:scenecut=0"',
        "-preset slow",
        "-preset ultrafast -tune zerolatency",
        "-c:v h264_nvenc -preset p4",
        "-c:v libx264 -c:a aac -b:a 192k",
        "-b:v 1500k -maxrate 1500k -bufsize 3000k",
    ],
)
def test_options_that_fit_the_output_pass(raw: str) -> None:
    for output in ("rtmp", "preview"):
        assert output_needs(parse_ffmpeg_args(raw), Q720, output) is None


def test_the_gop_limit_follows_the_frame_rate_and_audio_has_none() -> None:
    assert output_needs(("-g", "60"), Q720, "preview") is None
    assert output_needs(("-g", "61"), Q720, "preview") is not None
    assert output_needs(("-g", "600"), QUALITY_PRESETS["audio"], "rtmp") is None


def test_telegram_takes_no_encoder_option_and_says_so() -> None:
    args = parse_ffmpeg_args("-b:v 1M -preset placebo -g 600")

    assert output_needs(args, Q720, "telegram") is None  # no effect there, nothing to refuse
    note = telegram_note(args)
    assert note is not None
    assert "-b:v 1M, -preset placebo, -g 600: no effect on OUTPUT=telegram" in note
    assert "WebRTC" in note
    assert "applied" not in note


def test_telegram_note_names_the_options_that_still_apply() -> None:
    note = telegram_note(parse_ffmpeg_args("-fps_mode cfr -nostats -b:v 1M"))

    assert note is not None
    assert "-nostats, -b:v 1M: no effect" in note
    assert "-fps_mode cfr: applied to the raw frames" in note
    assert telegram_note(()) is None
