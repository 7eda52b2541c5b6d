"""Settings from the environment and ``.env`` (pydantic-settings), and the quality presets.

Keys keep the names operators already use (``API_ID``, ``PLAYLIST_FILE``, ``FFMPEG_ARGS``, ...);
``.env.template`` documents each one. Nothing is read at import time: call :func:`load_settings`.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from dotenv.parser import parse_stream
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from opskit.logs import MASKER
from tgstream.errors import ConfigError

__all__ = [
    "DEFAULT_ENV_FILE",
    "Quality",
    "QUALITY_PRESETS",
    "RTMP_SCHEMES",
    "Settings",
    "load_settings",
    "read_env_file",
    "settings_file",
]

DEFAULT_ENV_FILE: Final = Path(".env")
"""Read when present; ``--env-file PATH`` names another file, which must then exist."""
RTMP_SCHEMES: Final = ("rtmp", "rtmps")

OutputKind = Literal["telegram", "rtmp", "preview"]
QualityName = Literal["1080p", "720p", "480p", "360p", "audio"]
OnCallEnded = Literal["recreate", "wait"]


@dataclass(frozen=True, slots=True)
class Quality:
    """Target format of the broadcast. ``width == 0`` means audio only."""

    name: str
    width: int
    height: int
    fps: int
    video_kbps: int
    audio_kbps: int = 128
    sample_rate: int = 48_000
    channels: int = 2

    @property
    def has_video(self) -> bool:
        return self.width > 0

    @property
    def frame_bytes(self) -> int:
        """Bytes of one I420 frame."""
        return self.width * self.height * 3 // 2


QUALITY_PRESETS: dict[str, Quality] = {
    "1080p": Quality("1080p", 1920, 1080, 30, 4500),
    "720p": Quality("720p", 1280, 720, 30, 2500),
    "480p": Quality("480p", 854, 480, 30, 1200),
    "360p": Quality("360p", 640, 360, 30, 800),
    "audio": Quality("audio", 0, 0, 30, 0, audio_kbps=160),
}


class Settings(BaseSettings):
    """Every key of ``.env.template``. Secrets are ``SecretStr`` and registered for masking."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )

    API_ID: int | None = None
    API_HASH: SecretStr | None = None
    SESSION_STRING: SecretStr | None = None
    CHAT_ID: int | str | None = None

    PLAYLIST_FILE: Path = Path("playlist.txt")
    LOOP: bool = True
    SHUFFLE: bool = False
    VIDEO_QUALITY: QualityName = "720p"
    FFMPEG_ARGS: str = ""

    OUTPUT: OutputKind | None = None
    RTMP_URL: SecretStr | None = None
    PREVIEW_HOST: str = "127.0.0.1"
    PREVIEW_PORT: int = Field(default=8080, ge=1, le=65535)
    ON_CALL_ENDED: OnCallEnded = "wait"
    """An admin ends the video chat: ``wait`` for someone to start one (and alert), or
    ``recreate`` it at once. A start with no video chat running creates one either way."""

    SESSION_RECOVERY: Literal["degraded", "exit"] = "degraded"
    """What a dead session does: ``degraded`` waits for a new one; ``exit`` ends with code 1."""
    REAUTH_INTERVAL: float = Field(default=60.0, gt=0, le=3600)
    """Seconds between re-authentication cycles in degraded mode."""
    SESSION_CHECK_INTERVAL: float = Field(default=60.0, gt=0, le=3600)
    """Seconds between session checks while streaming."""
    AUTH_TIMEOUT: float = Field(default=10.0, gt=0, le=120)
    """Seconds one login attempt (connect + get_me) may take."""
    AUTO_REGEN: bool = False
    """With a terminal attached, a dead session starts the regeneration helper in-process."""
    ALERT_BOT_TOKEN: SecretStr | None = None
    ALERT_CHAT_ID: int | str | None = None
    ALERT_API_URL: str = "https://api.telegram.org"
    ALERT_MIN_INTERVAL: float = Field(default=300.0, ge=0, le=86400)
    """Seconds between two alerts of the same kind (entering / leaving degraded mode)."""

    PROMETHEUS_PORT: int = Field(default=9090, ge=0, le=65535)
    """Port of /metrics, /healthz and /status; 0 turns the exporter off."""
    PROMETHEUS_HOST: str = "127.0.0.1"
    PROMETHEUS_PORT_SPAN: int = Field(default=10, ge=0, le=1000)
    """When PROMETHEUS_PORT is taken, the next ports up to PROMETHEUS_PORT + this are tried."""
    METRICS_FILE: Path = Path("tgstream.prom")
    """Written instead (node_exporter textfile format) when no port in the span is free."""
    METRICS_FILE_INTERVAL: float = Field(default=15.0, gt=0, le=3600)

    STALL_TIMEOUT: float = Field(default=10.0, gt=0, le=300)
    """Seconds without output from a source before it counts as stalled and is skipped."""
    RESOLVE_TIMEOUT: float = Field(default=60.0, gt=0, le=600)
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    LOG_FORMAT: Literal["text", "json"] = "text"

    @field_validator("CHAT_ID", "ALERT_CHAT_ID", mode="before")
    @classmethod
    def _chat_id(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if value == "":
            return None
        return value

    @field_validator(
        "API_ID",
        "OUTPUT",
        "RTMP_URL",
        "API_HASH",
        "SESSION_STRING",
        "ALERT_BOT_TOKEN",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("RTMP_URL", mode="after")
    @classmethod
    def _rtmp_url(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never shows the URL: its last part is the stream key.
        if value is None:
            return None
        parts = urlsplit(value.get_secret_value().strip())
        if parts.scheme.lower() not in RTMP_SCHEMES:
            got = f"a {parts.scheme}:// URL" if parts.scheme else "no scheme"
            raise ValueError(
                f"must be an RTMP URL, rtmp://host/app/key or rtmps://host/app/key (got {got})"
            )
        if not parts.hostname:
            raise ValueError("names no host; write it as rtmp://host/app/key")
        return value

    @model_validator(mode="after")
    def _output_needs(self) -> Settings:
        if self.output == "rtmp" and self.RTMP_URL is None:
            raise ValueError("OUTPUT=rtmp needs RTMP_URL (rtmp://host/app/key or rtmps://...)")
        if self.output == "telegram":
            missing = [
                k
                for k in ("API_ID", "API_HASH", "SESSION_STRING", "CHAT_ID")
                if getattr(self, k) is None
            ]
            if missing:
                raise ValueError(f"OUTPUT=telegram needs {', '.join(missing)}")
        if (self.ALERT_BOT_TOKEN is None) != (self.ALERT_CHAT_ID is None):
            raise ValueError("alerts need both ALERT_BOT_TOKEN and ALERT_CHAT_ID (or neither)")
        return self

    @property
    def has_telegram_credentials(self) -> bool:
        return None not in (self.API_ID, self.API_HASH, self.SESSION_STRING, self.CHAT_ID)

    @property
    def output(self) -> OutputKind:
        """``OUTPUT`` if set; otherwise ``telegram`` with credentials, else ``preview``."""
        if self.OUTPUT is not None:
            return self.OUTPUT
        return "telegram" if self.has_telegram_credentials else "preview"

    @property
    def quality(self) -> Quality:
        return QUALITY_PRESETS[self.VIDEO_QUALITY]

    def secrets(self) -> list[str]:
        """Values to mask in logs. Of RTMP_URL, the stream key (last path part) and a password
        in it are secret; the host and app stay readable for the operator."""
        values = [
            s.get_secret_value()
            for s in (self.API_HASH, self.SESSION_STRING, self.ALERT_BOT_TOKEN)
            if s is not None
        ]
        if self.RTMP_URL is not None:
            url = self.RTMP_URL.get_secret_value()
            values.append(url.rstrip("/").rsplit("/", 1)[-1])
            password = urlsplit(url).password
            if password:
                values.append(password)
        return values


_SECRET_KEYS = {"API_HASH", "SESSION_STRING", "RTMP_URL", "ALERT_BOT_TOKEN"}


def _describe(exc: ValidationError, env_file: Path | None, file_lines: dict[str, int]) -> str:
    where = f"the environment or {env_file}" if env_file else "the environment"
    lines = [f"invalid configuration (from {where}):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "settings"
        shown = "" if key in _SECRET_KEYS or not err["loc"] else f" (got {err.get('input')!r})"
        # The environment wins over the file: name the file's line only when it is the source.
        at = (
            f" ({env_file} line {file_lines[key]})"
            if key in file_lines and key not in os.environ
            else ""
        )
        lines.append(f"  {key}{at}: {err['msg']}{shown}")
    lines.append("fix the keys above; .env.template documents each one")
    return "\n".join(lines)


_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_env_file(path: Path) -> dict[str, str]:
    """The ``KEY=value`` lines of ``path``, read as python-dotenv reads them (quotes, comments,
    ``export``), but strict: text that is not UTF-8, a line without ``=``, or a line dotenv
    cannot parse raises :class:`ConfigError` naming the file and line, where dotenv would log a
    warning and drop the line (and the default would silently apply)."""
    return {key: value for key, (_, value) in _parse_env_file(path).items()}


def _parse_env_file(path: Path) -> dict[str, tuple[int, str]]:
    """``read_env_file`` with the line of each key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"settings file {path} cannot be read ({exc.strerror}); check the path and its "
            "permissions"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path} line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); a settings "
            "file holds KEY=value lines: re-create it from .env.template"
        ) from None
    if text.startswith("\ufeff"):
        raise ConfigError(
            f"{path} line 1: starts with a byte-order mark; save it as UTF-8 without BOM"
        )
    values: dict[str, tuple[int, str]] = {}
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        lead = original[: len(original) - len(original.lstrip())]
        line = binding.original.line + lead.count("\n")
        shown = original.strip().splitlines()[0][:40] if original.strip() else ""
        if binding.error and "=" not in shown:
            raise ConfigError(
                f"{path} line {line}: {shown!r} has no '='; write it as KEY=value (e.g. "
                "LOOP=0), or start it with # to comment it out"
            )
        if binding.error or (binding.key is not None and not _KEY.fullmatch(binding.key)):
            raise ConfigError(
                f"{path} line {line}: cannot be read as KEY=value ({shown!r}); write it as "
                "KEY=value (quote values with spaces) or start it with # to comment it out"
            )
        if binding.key is None:  # a comment or blank lines
            continue
        if binding.value is None:
            raise ConfigError(
                f"{path} line {line}: {binding.key} has no '=' and no value; write it as "
                f"{binding.key}=value, or remove the line to use the default"
            )
        values[binding.key] = (line, binding.value)
    return values


def settings_file(option: Path | None) -> Path | None:
    """The settings file for ``--env-file``: ``None`` means the default ``.env``, read when it
    exists; a file named explicitly must exist (a typo must not fall back to the defaults)."""
    if option is None:
        return DEFAULT_ENV_FILE if DEFAULT_ENV_FILE.is_file() else None
    if not option.is_file():
        raise ConfigError(
            f"--env-file {option}: no such file; check the path (without --env-file, ./.env "
            "is read when it exists)"
        )
    return option


def load_settings(env_file: Path | None = DEFAULT_ENV_FILE, **overrides: Any) -> Settings:
    """Read settings; raise :class:`ConfigError` with one line per invalid key, or naming the
    line of ``env_file`` that is not ``KEY=value``."""
    file_lines: dict[str, int] = {}
    if env_file is not None and env_file.exists():
        file_lines = {key: line for key, (line, _) in _parse_env_file(env_file).items()}
    try:
        settings = Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(_describe(exc, env_file, file_lines)) from None
    MASKER.add(*settings.secrets())
    return settings
