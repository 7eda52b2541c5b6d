"""Settings from the environment and ``.env``: defaults, output choice, errors, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tgstream.config import QUALITY_PRESETS, Settings, load_settings, settings_file
from tgstream.errors import ConfigError, ExitCode

API_HASH = "0123456789abcdef0123456789abcdef"
SESSION = "BQAx-session-string-that-must-never-be-printed-1234567890"
TELEGRAM = {
    "API_ID": "12345",
    "API_HASH": API_HASH,
    "SESSION_STRING": SESSION,
    "CHAT_ID": "-100123",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting comes from the real environment or a ``.env`` in the working directory."""
    for key in Settings.model_fields:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)


def setenv(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


def config_error(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> str:
    setenv(monkeypatch, values)
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    assert caught.value.exit_code is ExitCode.CONFIG
    return str(caught.value)


def test_defaults_without_any_environment() -> None:
    s = load_settings(None)

    assert s.output == "preview"
    assert (s.API_ID, s.API_HASH, s.SESSION_STRING, s.CHAT_ID, s.OUTPUT, s.RTMP_URL) == (None,) * 6
    assert s.PLAYLIST_FILE.as_posix() == "playlist.txt"
    assert (s.LOOP, s.SHUFFLE) == (True, False)
    assert s.FFMPEG_ARGS == ""
    assert s.quality == QUALITY_PRESETS["720p"]
    assert (s.PREVIEW_HOST, s.PREVIEW_PORT) == ("127.0.0.1", 8080)
    assert (s.LOG_LEVEL, s.LOG_FORMAT) == ("INFO", "text")
    assert s.secrets() == []


@pytest.mark.parametrize(
    ("values", "output"),
    [
        ({}, "preview"),
        (TELEGRAM, "telegram"),
        ({**TELEGRAM, "CHAT_ID": ""}, "preview"),
        ({k: v for k, v in TELEGRAM.items() if k != "SESSION_STRING"}, "preview"),
        ({**TELEGRAM, "OUTPUT": "preview"}, "preview"),
        ({**TELEGRAM, "OUTPUT": "rtmp", "RTMP_URL": "rtmp://h/app/key"}, "rtmp"),
        ({"OUTPUT": "rtmp", "RTMP_URL": "rtmp://h/app/key"}, "rtmp"),
        ({"OUTPUT": "", **TELEGRAM}, "telegram"),
    ],
)
def test_output_choice(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], output: str
) -> None:
    setenv(monkeypatch, values)

    assert settings().output == output


def test_rtmp_output_needs_rtmp_url(monkeypatch: pytest.MonkeyPatch) -> None:
    message = config_error(monkeypatch, {"OUTPUT": "rtmp"})

    assert "RTMP_URL" in message


def test_telegram_output_names_every_missing_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    message = config_error(
        monkeypatch, {"OUTPUT": "telegram", "API_HASH": API_HASH, "SESSION_STRING": SESSION}
    )

    assert "OUTPUT=telegram needs API_ID, CHAT_ID" in message
    assert API_HASH not in message
    assert SESSION not in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("VIDEO_QUALITY", "999p"),
        ("OUTPUT", "youtube"),
        ("PREVIEW_PORT", "70000"),
        ("STALL_TIMEOUT", "0"),
        ("LOG_LEVEL", "LOUD"),
        ("LOOP", "maybe"),
    ],
)
def test_a_bad_value_names_the_key_and_the_value(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    message = config_error(monkeypatch, {key: value})

    assert f"{key}: " in message
    assert repr(value) in message


def test_a_bad_key_next_to_secrets_never_echoes_the_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rtmp_url = "rtmps://live.example.org/app/stream-key-abcdef123456"
    message = config_error(
        monkeypatch,
        {**TELEGRAM, "OUTPUT": "telegram", "API_ID": "abc", "RTMP_URL": rtmp_url},
    )

    assert "API_ID: " in message
    assert "'abc'" in message
    for secret in (SESSION, API_HASH, rtmp_url, "stream-key-abcdef123456"):
        assert secret not in message


@pytest.mark.parametrize("key", ["API_HASH", "SESSION_STRING", "RTMP_URL"])
def test_an_invalid_secret_is_named_but_never_echoed(key: str) -> None:
    secret = 987_654_321_012_345  # not a string: refused, and its value must stay hidden

    with pytest.raises(ConfigError) as caught:
        load_settings(None, **{key: secret})

    assert f"{key}: " in str(caught.value)
    assert str(secret) not in str(caught.value)


def test_settings_are_read_from_an_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text(
        "# comment\nVIDEO_QUALITY=360p\nCHAT_ID=@channel\nLOOP=0\nFFMPEG_ARGS=-b:v 900k\n",
        encoding="utf-8",
    )

    s = load_settings(env_file)

    assert s.quality == QUALITY_PRESETS["360p"]
    assert s.CHAT_ID == "@channel"
    assert s.LOOP is False
    assert s.FFMPEG_ARGS == "-b:v 900k"


def test_an_error_from_an_env_file_names_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / "broken.env"
    env_file.write_text("VIDEO_QUALITY=4k\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="VIDEO_QUALITY") as caught:
        load_settings(env_file)

    assert str(env_file) in str(caught.value)


def test_the_default_env_file_is_dot_env_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("VIDEO_QUALITY=480p\n", encoding="utf-8")

    assert Settings().VIDEO_QUALITY == "480p"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("-100123", -100123),
        ("12345", 12345),
        (" -1001234567890 ", -1001234567890),
        ("@channel", "@channel"),
        ("", None),
    ],
)
def test_chat_id(monkeypatch: pytest.MonkeyPatch, raw: str, expected: int | str | None) -> None:
    monkeypatch.setenv("CHAT_ID", raw)

    chat = settings().CHAT_ID

    assert chat == expected
    assert type(chat) is type(expected)


@pytest.mark.parametrize(
    ("rtmp_url", "key"),
    [
        ("rtmp://a.rtmp.example.com/live2/abcd-efgh-ijkl", "abcd-efgh-ijkl"),
        ("rtmps://live.example.org:443/app/secret-key-99/", "secret-key-99"),
    ],
)
def test_secrets_register_only_the_stream_key_of_rtmp_url(
    monkeypatch: pytest.MonkeyPatch, rtmp_url: str, key: str
) -> None:
    setenv(monkeypatch, {**TELEGRAM, "RTMP_URL": rtmp_url})

    assert settings().secrets() == [API_HASH, SESSION, key]


# ---- the .env file itself: read strictly, errors name the file and the line ----------------


def env_error(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.exit_code is ExitCode.CONFIG
    return str(caught.value)


def test_binary_garbage_names_the_file_and_line(tmp_path: Path) -> None:
    env = tmp_path / "garbage.env"
    message = env_error(env, b"LOOP=0\nVIDEO_QUALITY=480p\n\x96\xff\x00binary\n")

    assert f"{env} line 3: not UTF-8 text" in message
    assert ".env.template" in message


def test_text_that_decodes_but_is_no_key_is_refused(tmp_path: Path) -> None:
    env = tmp_path / "noise.env"
    message = env_error(env, b"LOOP=0\n\x01\x02\x03=4\n")

    assert f"{env} line 2: cannot be read as KEY=value" in message


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        (b"# settings\n\nLOOP 0\n", 3, "'LOOP 0' has no '='"),
        (b"VIDEO_QUALITY=360p\nLOOP\n", 2, "LOOP has no '=' and no value"),
        (b"A=1\nB='never closed\n", 2, "cannot be read as KEY=value"),
    ],
)
def test_a_line_that_is_not_key_value_is_refused_not_dropped(
    tmp_path: Path, content: bytes, line: int, words: str
) -> None:
    env = tmp_path / ".env"
    message = env_error(env, content)

    assert f"{env} line {line}: " in message
    assert words in message


def test_comments_quotes_and_export_still_read(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('# c\n\nexport LOOP=0\nFFMPEG_ARGS="-b:v 900k  -maxrate 1M"\nSHUFFLE=1 # yes\n')

    s = load_settings(env)

    assert (s.LOOP, s.SHUFFLE, s.FFMPEG_ARGS) == (False, True, "-b:v 900k  -maxrate 1M")


def test_a_bad_value_from_the_file_names_its_line(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("LOOP=0\n# quality\nVIDEO_QUALITY=4k\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(env)

    assert f"VIDEO_QUALITY ({env} line 3): " in str(caught.value)


def test_an_env_file_named_explicitly_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--env-file .*missing\.env: no such file") as caught:
        settings_file(tmp_path / "missing.env")
    assert caught.value.exit_code is ExitCode.CONFIG


def test_the_default_env_file_stays_optional(tmp_path: Path) -> None:
    assert settings_file(None) is None  # the working directory (tmp_path) has no .env
    (tmp_path / ".env").write_text("LOOP=0\n")
    assert settings_file(None) == Path(".env")
    named = tmp_path / "other.env"
    named.write_text("LOOP=1\n")
    assert settings_file(named) == named


@pytest.mark.parametrize(
    ("url", "got"),
    [
        ("http://example.org/app/Sk3y-0099", "a http:// URL"),
        ("srt://example.org:9000/Sk3y-0099", "a srt:// URL"),
        ("example.org/app/Sk3y-0099", "no scheme"),
        ("rtmp:///app/Sk3y-0099", None),
    ],
)
def test_rtmp_url_must_be_an_rtmp_url(
    monkeypatch: pytest.MonkeyPatch, url: str, got: str | None
) -> None:
    message = config_error(monkeypatch, {"OUTPUT": "rtmp", "RTMP_URL": url})

    assert "RTMP_URL: " in message
    assert (got or "names no host") in message
    assert "Sk3y-0099" not in message  # the URL (its stream key) is never echoed
    assert "example.org" not in message


@pytest.mark.parametrize("url", ["rtmp://h/app/key", "RTMPS://dc4-1.rtmp.t.me/s/123:abc"])
def test_rtmp_and_rtmps_urls_are_accepted(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    setenv(monkeypatch, {"OUTPUT": "rtmp", "RTMP_URL": url})

    assert settings().output == "rtmp"
