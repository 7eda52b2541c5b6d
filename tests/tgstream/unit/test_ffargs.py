"""``FFMPEG_ARGS`` parsing: shell-style splitting, refused options, bare values."""

from __future__ import annotations

import pytest

from tgstream.ffargs import FORBIDDEN_OPTIONS, FfmpegArgs, FfmpegArgsError, parse_ffmpeg_args


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
