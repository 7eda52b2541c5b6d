"""ffmpeg command lines for sources, the remux decision, and the FFMPEG_ARGS dry run."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import pytest

from opskit.procs import Children
from tgstream.adapters.ffmpeg import Recipe, can_remux, check_ffmpeg_args, source_argv
from tgstream.bootstrap import resolve_ffmpeg_args
from tgstream.config import QUALITY_PRESETS, Quality, load_settings
from tgstream.domain.playlist import Item
from tgstream.domain.track import MediaInfo, Track
from tgstream.ffargs import FfmpegArgs

Q720 = QUALITY_PRESETS["720p"]
AUDIO_Q = QUALITY_PRESETS["audio"]
NO_ARGS = FfmpegArgs()
CUSTOM = FfmpegArgs(("-b:v", "900k", "-preset", "fast"))

FITS_720P = MediaInfo(
    duration=60.0,
    vcodec="h264",
    width=1280,
    height=720,
    fps=30.0,
    pix_fmt="yuv420p",
    acodec="aac",
    sample_rate=48_000,
    channels=2,
    max_keyframe_interval=2.0,
)


def track(
    info: MediaInfo = FITS_720P, url: str = "/media/clip.mp4", audio_url: str | None = None
) -> Track:
    return Track(Item(f"{url}#1", url, "file", 1), url, info, audio_url=audio_url)


def after(argv: Sequence[str], option: str) -> list[str]:
    """Every value that follows ``option`` in ``argv``."""
    return [argv[n + 1] for n, a in enumerate(argv[:-1]) if a == option]


def inputs(argv: Sequence[str]) -> list[str]:
    return after(argv, "-i")


# ---- can_remux ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "info",
    [
        FITS_720P,
        replace(FITS_720P, pix_fmt="yuvj420p"),
        replace(FITS_720P, sample_rate=44_100),
        replace(FITS_720P, channels=1),
        replace(FITS_720P, fps=29.995),
        replace(FITS_720P, max_keyframe_interval=2.05),
        replace(FITS_720P, duration=None),
    ],
)
def test_can_remux_what_already_fits(info: MediaInfo) -> None:
    assert can_remux(info, Q720, NO_ARGS) is True
    assert can_remux(info, Q720, FfmpegArgs(rejected="refused: preset in force")) is True


@pytest.mark.parametrize(
    "info",
    [
        replace(FITS_720P, vcodec="hevc"),
        replace(FITS_720P, vcodec=None),
        replace(FITS_720P, pix_fmt="yuv420p10le"),
        replace(FITS_720P, pix_fmt=None),
        replace(FITS_720P, width=1920, height=1080),
        replace(FITS_720P, width=1280, height=718),
        replace(FITS_720P, fps=25.0),
        replace(FITS_720P, fps=29.97),
        replace(FITS_720P, acodec="mp3"),
        replace(FITS_720P, acodec=None),
        replace(FITS_720P, sample_rate=32_000),
        replace(FITS_720P, sample_rate=96_000),
        replace(FITS_720P, channels=6),
        replace(FITS_720P, channels=0),
        replace(FITS_720P, max_keyframe_interval=None),
        replace(FITS_720P, max_keyframe_interval=2.5),
    ],
)
def test_cannot_remux_what_does_not_fit(info: MediaInfo) -> None:
    assert can_remux(info, Q720, NO_ARGS) is False


@pytest.mark.parametrize(
    ("quality", "ffargs"),
    [
        (QUALITY_PRESETS["1080p"], NO_ARGS),
        (AUDIO_Q, NO_ARGS),
        (Q720, CUSTOM),
    ],
)
def test_cannot_remux_for_another_quality_or_with_custom_args(
    quality: Quality, ffargs: FfmpegArgs
) -> None:
    assert can_remux(FITS_720P, quality, ffargs) is False


# ---- source_argv: MPEG-TS ------------------------------------------------------------------


def test_transcode_puts_ffmpeg_args_after_the_defaults() -> None:
    argv = source_argv(track(), Q720, CUSTOM, "ts")

    assert after(argv, "-b:v") == ["2500k", "900k"]
    assert after(argv, "-preset") == ["veryfast", "fast"]
    assert argv.index("900k") > argv.index("-sc_threshold")
    assert argv[-9:] == [
        "-f",
        "mpegts",
        "-muxdelay",
        "0",
        "-muxpreload",
        "0",
        "-pes_payload_size",
        "0",
        "pipe:1",
    ]
    assert argv.index("fast") < argv.index("mpegts")


def test_transcode_encodes_h264_aac_at_the_quality() -> None:
    argv = source_argv(track(), Q720, NO_ARGS, "ts")

    assert argv[0] == "ffmpeg"
    assert after(argv, "-map") == ["0:v:0", "0:a:0"]
    assert after(argv, "-c:v") == ["libx264"]
    assert after(argv, "-c:a") == ["aac"]
    assert after(argv, "-vf") == []  # already 1280x720: no scaler, no copy of every frame
    assert after(argv, "-r") == ["30"]
    assert after(argv, "-pix_fmt") == ["yuv420p"]
    assert after(argv, "-g") == ["60"]
    assert (after(argv, "-ar"), after(argv, "-ac")) == (["48000"], ["2"])
    assert "-shortest" not in argv


@pytest.mark.parametrize("recipe", ["ts", "raw"])
def test_a_source_of_another_size_is_scaled_and_letterboxed(recipe: Recipe) -> None:
    small = replace(FITS_720P, width=640, height=480)

    argv = source_argv(track(small), Q720, NO_ARGS, recipe)

    (vf,) = after(argv, "-vf")
    # Raw frames are scaled bilinear (cheaper; PSNR/SSIM in docs/benchmarks.md); what is
    # encoded for RTMP keeps swscale's bicubic.
    scaler = "bilinear" if recipe == "raw" else "bicubic"
    assert vf.startswith(
        f"scale=1280:720:force_original_aspect_ratio=decrease:flags={scaler},pad=1280:720"
    )
    assert after(argv, "-r") == ["30"]


def test_remux_copies_without_encoder_options() -> None:
    argv = source_argv(track(), Q720, CUSTOM, "ts", remux=True)

    assert after(argv, "-c") == ["copy"]
    assert after(argv, "-map") == ["0:v:0", "0:a:0"]
    for option in ("-c:v", "-c:a", "-b:v", "-preset", "-vf", "-af", "-g", "900k"):
        assert option not in argv
    assert argv[-1] == "pipe:1"


def test_a_source_without_audio_gets_silence() -> None:
    argv = source_argv(track(replace(FITS_720P, acodec=None)), Q720, NO_ARGS, "ts")

    assert inputs(argv) == ["/media/clip.mp4", "anullsrc=r=48000:cl=stereo"]
    silence = argv.index("anullsrc=r=48000:cl=stereo")
    assert argv[silence - 3 : silence] == ["-f", "lavfi", "-i"]
    assert after(argv, "-map") == ["0:v:0", "1:a:0"]
    assert "-shortest" in argv


def test_an_audio_only_source_gets_a_black_picture_on_a_video_quality() -> None:
    info = MediaInfo(duration=180.0, acodec="mp3", sample_rate=44_100, channels=2)

    argv = source_argv(track(info, "/music/song.mp3"), Q720, NO_ARGS, "ts")

    assert inputs(argv) == ["/music/song.mp3", "color=c=black:s=1280x720:r=30"]
    assert after(argv, "-map") == ["1:v:0", "0:a:0"]
    assert "-shortest" in argv


def test_an_audio_quality_has_no_video_at_all() -> None:
    argv = source_argv(track(), AUDIO_Q, NO_ARGS, "ts")

    assert after(argv, "-map") == ["0:a:0"]
    for option in ("-vf", "-c:v", "color=c=black:s=0x0:r=30"):
        assert option not in argv


def test_separate_audio_url_is_a_second_input() -> None:
    t = track(url="https://cdn.example/v.mp4", audio_url="https://cdn.example/a.m4a")

    argv = source_argv(t, Q720, NO_ARGS, "ts", start=3.0)

    assert inputs(argv) == ["https://cdn.example/v.mp4", "https://cdn.example/a.m4a"]
    assert after(argv, "-map") == ["0:v:0", "1:a:0"]
    assert after(argv, "-ss") == ["3.000", "3.000"]
    assert after(argv, "-reconnect") == ["1", "1"]


@pytest.mark.parametrize("recipe", ["ts", "raw"])
def test_a_start_position_seeks_before_the_input(recipe: Recipe) -> None:
    argv = source_argv(track(), Q720, NO_ARGS, recipe, start=12.3456)

    ss = argv.index("-ss")
    assert argv[ss + 1] == "12.346"
    assert ss < argv.index("-i")


@pytest.mark.parametrize(
    ("info", "start"),
    [(FITS_720P, 0.0), (replace(FITS_720P, duration=None), 12.0)],
    ids=["start-0", "live"],
)
def test_no_seek_from_the_start_or_in_a_live_source(info: MediaInfo, start: float) -> None:
    argv = source_argv(track(info, "rtmp://cam.example/live/x"), Q720, NO_ARGS, "ts", start=start)

    assert "-ss" not in argv


# ---- source_argv: raw frames ---------------------------------------------------------------


def output_options(argv: list[str], pipe: str) -> list[str]:
    """The options of the output ``pipe``: from its ``-map`` up to the pipe itself."""
    end = argv.index(pipe)
    begin = max(n for n, a in enumerate(argv[:end]) if a == "-map")
    return argv[begin : end + 1]


def test_raw_writes_i420_to_fd3_and_s16le_to_fd4() -> None:
    argv = source_argv(track(), Q720, NO_ARGS, "raw")

    video = output_options(argv, "pipe:3")
    audio = output_options(argv, "pipe:4")
    assert video[:2] == ["-map", "0:v:0"]
    # YUV4MPEG2: the decoded planes as they are, without the rawvideo encoder's copy.
    assert after(video, "-f") == ["yuv4mpegpipe"]
    assert after(video, "-c:v") == ["wrapped_avframe"]
    assert after(video, "-pix_fmt") == ["yuv420p"]
    assert after(audio, "-f") == ["s16le"]
    assert after(audio, "-c:a") == ["pcm_s16le"]
    assert (after(audio, "-ar"), after(audio, "-ac")) == (["48000"], ["2"])
    assert "mpegts" not in argv
    assert "pipe:1" not in argv


def test_raw_decodes_up_to_1080p_on_one_thread_and_larger_sources_on_ffmpegs_threads() -> None:
    argv = source_argv(track(), Q720, NO_ARGS, "raw")
    assert after(argv, "-threads") == ["1"]
    assert argv.index("-threads") < argv.index("-i")  # an input option: the decoder's
    uhd = replace(FITS_720P, width=3840, height=2160)
    assert "-threads" not in source_argv(track(uhd), Q720, NO_ARGS, "raw")
    assert "-threads" not in source_argv(track(), Q720, NO_ARGS, "ts")


def test_raw_pcm_of_a_file_is_written_in_blocks_and_of_a_live_source_as_it_comes() -> None:
    audio = output_options(source_argv(track(), Q720, NO_ARGS, "raw"), "pipe:4")
    assert after(audio, "-flush_packets") == ["0"]
    live = replace(FITS_720P, duration=None)
    audio = output_options(source_argv(track(live), Q720, NO_ARGS, "raw"), "pipe:4")
    assert "-flush_packets" not in audio


def test_raw_on_an_audio_quality_has_no_video_pipe() -> None:
    argv = source_argv(track(), AUDIO_Q, NO_ARGS, "raw")

    assert "pipe:3" not in argv
    assert argv[-1] == "pipe:4"


# ---- check_ffmpeg_args ---------------------------------------------------------------------


class NoChildren(Children):
    """Fails the test if a dry run is started."""

    async def run(
        self, argv: Sequence[str], timeout: float, stdin: bytes | None = None
    ) -> tuple[int, bytes, bytes]:
        raise AssertionError(f"no ffmpeg run expected, got {argv}")


class ScriptedChildren(Children):
    """Answers the dry run with a fixed result and records the command."""

    def __init__(self, code: int, stderr: bytes) -> None:
        super().__init__()
        self.result = (code, b"", stderr)
        self.argv: list[str] = []

    async def run(
        self, argv: Sequence[str], timeout: float, stdin: bytes | None = None
    ) -> tuple[int, bytes, bytes]:
        self.argv = list(argv)
        return self.result


@pytest.fixture
async def children() -> AsyncIterator[Children]:
    children = Children()
    yield children
    await children.close()


@pytest.mark.parametrize("raw", ["", "   \t "])
async def test_empty_args_need_no_dry_run(raw: str) -> None:
    assert await check_ffmpeg_args(raw, Q720, NoChildren()) == FfmpegArgs()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [('-x264-params "keyint=60', "unbalanced"), ("-vf scale=1:1", "not allowed")],
)
async def test_unparsable_args_are_rejected_without_a_dry_run(raw: str, reason: str) -> None:
    result = await check_ffmpeg_args(raw, Q720, NoChildren())

    assert result.args == ()
    assert result.rejected is not None
    assert reason in result.rejected


async def test_the_dry_run_puts_the_args_after_the_defaults_and_reports_the_last_line() -> None:
    fake = ScriptedChildren(1, b"some context\nUnknown encoder 'nope'\n")

    result = await check_ffmpeg_args("-c:v nope", Q720, fake)

    assert result.args == ()
    assert result.rejected is not None
    assert "ffmpeg refused FFMPEG_ARGS in a dry run: Unknown encoder 'nope';" in result.rejected
    assert after(fake.argv, "-c:v") == ["libx264", "nope"]
    assert fake.argv[-3:] == ["-f", "null", "-"]


async def test_a_silent_failure_reports_the_exit_code() -> None:
    result = await check_ffmpeg_args("-g 10", Q720, ScriptedChildren(8, b""))

    assert result.rejected is not None
    assert "exit code 8" in result.rejected


needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


@pytest.mark.ffmpeg
@needs_ffmpeg
async def test_real_dry_run_accepts_valid_encoder_options(children: Children) -> None:
    result = await check_ffmpeg_args("-b:v 900k -preset fast", QUALITY_PRESETS["360p"], children)

    assert result == FfmpegArgs(("-b:v", "900k", "-preset", "fast"))


@pytest.mark.ffmpeg
@needs_ffmpeg
async def test_real_dry_run_rejects_an_unknown_codec(children: Children) -> None:
    result = await check_ffmpeg_args("-c:v no_such_codec", QUALITY_PRESETS["360p"], children)

    assert result.args == ()
    assert result.rejected is not None
    assert "ffmpeg refused" in result.rejected
    assert "no_such_codec" in result.rejected


@pytest.mark.ffmpeg
@needs_ffmpeg
@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("-b:v 900k -g 600", "-g 600 puts more than 2 s between keyframes"),
        ("-preset placebo", "-preset placebo is slower than real time"),
        ("-preset fast -b:v", "option '-b:v' has no value (it is the last token)"),
    ],
)
async def test_real_dry_run_then_the_output_needs_refuse_in_words(
    children: Children, raw: str, words: str
) -> None:
    result = await check_ffmpeg_args(raw, QUALITY_PRESETS["360p"], children, "rtmp")

    assert result.args == ()
    assert result.rejected is not None
    assert words in result.rejected
    assert "0.3" not in result.rejected  # never the dry run's own values


@pytest.mark.ffmpeg
@needs_ffmpeg
async def test_on_telegram_the_args_pass_with_a_note_and_start_up_says_it(
    children: Children, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(
        None,
        OUTPUT="telegram",
        API_ID=1,
        API_HASH="0123456789abcdef0123456789abcdef",
        SESSION_STRING="x" * 40,
        CHAT_ID=-100123,
        VIDEO_QUALITY="360p",
        FFMPEG_ARGS="-b:v 900k -preset veryslow",
    )

    result = await resolve_ffmpeg_args(settings, children)

    assert result.rejected is None
    assert result.args == ("-b:v", "900k", "-preset", "veryslow")
    assert result.note is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [result.note]
    assert "-b:v 900k, -preset veryslow: no effect on OUTPUT=telegram" in warnings[0]


def test_the_raw_recipe_overrides_every_encoder_choice_after_the_operators_args() -> None:
    """Why FFMPEG_ARGS has no effect on telegram: raw frames (YUV4MPEG2) / PCM come after
    them."""
    argv = source_argv(track(), Q720, FfmpegArgs(("-c:v", "libx264", "-b:v", "1M")), "raw")
    video_end = argv.index("pipe:3")
    raw = argv.index("wrapped_avframe", argv.index("libx264"))
    assert argv.index("libx264") < raw < video_end
    assert argv[raw - 1 : video_end] == ["-c:v", "wrapped_avframe", "-f", "yuv4mpegpipe"]
