"""Settings from the environment and ``.env`` (pydantic-settings), and the quality presets.

Keys keep the names operators already use (``API_ID``, ``PLAYLIST_FILE``, ``FFMPEG_ARGS``, ...);
``.env.template`` documents each one. Nothing is read at import time: call :func:`load_settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from opskit.logs import MASKER
from tgstream.errors import ConfigError

__all__ = ["Quality", "QUALITY_PRESETS", "Settings", "load_settings"]

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
        """Values to mask in logs. For RTMP_URL only the stream key (last path part) is secret."""
        values = [
            s.get_secret_value()
            for s in (self.API_HASH, self.SESSION_STRING, self.ALERT_BOT_TOKEN)
            if s is not None
        ]
        if self.RTMP_URL is not None:
            values.append(self.RTMP_URL.get_secret_value().rstrip("/").rsplit("/", 1)[-1])
        return values


_SECRET_KEYS = {"API_HASH", "SESSION_STRING", "RTMP_URL", "ALERT_BOT_TOKEN"}


def _describe(exc: ValidationError, env_file: Path | None) -> str:
    where = f"the environment or {env_file}" if env_file else "the environment"
    lines = [f"invalid configuration (from {where}):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "settings"
        shown = "" if key in _SECRET_KEYS or not err["loc"] else f" (got {err.get('input')!r})"
        lines.append(f"  {key}: {err['msg']}{shown}")
    lines.append("fix the keys above; .env.template documents each one")
    return "\n".join(lines)


def load_settings(env_file: Path | None = Path(".env"), **overrides: Any) -> Settings:
    """Read settings; raise :class:`ConfigError` with one line per invalid key."""
    try:
        settings = Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(_describe(exc, env_file)) from None
    MASKER.add(*settings.secrets())
    return settings
