"""chat4all settings (``CHAT4ALL_*`` from the environment or ``.env``); nothing read at import."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from chat4all.errors import InvalidRequest

__all__ = ["Settings", "load_settings"]


class BotAccount(BaseModel):
    """One Telegram bot of ours: its token, and the tenant it belongs to (default:
    ``CHAT4ALL_DEFAULT_TENANT``)."""

    model_config = ConfigDict(extra="forbid")
    token: SecretStr
    tenant: str | None = Field(default=None, min_length=1, max_length=64)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHAT4ALL_", env_file=".env", extra="ignore", case_sensitive=False
    )

    DATABASE_URL: str = ""
    """SQLAlchemy URL; empty: SQLite in DATA_DIR (the embedded default)."""
    DATA_DIR: Path = Path(".chat4all")
    HOST: str = "127.0.0.1"
    PORT: int = Field(default=8000, ge=0, le=65535)
    GRPC_PORT: int = Field(default=50051, ge=0, le=65535)
    TELEGRAM_BOTS: dict[str, BotAccount] = {}
    """Our Telegram accounts, JSON: ``{"account": "bot token"}``, or with its tenant
    ``{"account": {"token": "...", "tenant": "acme"}}``. Empty: the simulator's bot."""
    TELEGRAM_API_URL: str = "https://api.telegram.org"
    TELEGRAM_WEBHOOK_SECRET: SecretStr | None = None
    """The secret_token given to setWebhook; Telegram sends it back with every update. Empty
    on the embedded default: a random one, shared with the simulator."""
    TELEGRAM_POLLING: bool = False
    """Receive updates with getUpdates long polling instead of the webhook."""
    DEFAULT_TENANT: str = "default"
    """The tenant that owns the configured channel accounts (and the first admin key)."""
    SIMULATOR_PORT: int = Field(default=8081, ge=0, le=65535)
    RATE_PER_KEY: int = Field(default=100, ge=0, le=1_000_000)
    """Requests a minute per API key (token bucket, bursts up to that); 0 turns it off."""
    RATE_GLOBAL: int = Field(default=0, ge=0, le=100_000_000)
    """Requests a minute for all keys together; 0 turns it off."""
    IDEMPOTENCY_HOURS: int = Field(default=24, ge=24, le=24 * 366)
    """How long an Idempotency-Key (and a provider's update id) is remembered; at least 24."""
    MAX_ATTEMPTS: int = Field(default=8, ge=1, le=100)
    TLS_CERT_FILE: FilePath | None = None
    """PEM certificate chain: with TLS_KEY_FILE, both APIs serve TLS (REST: 1.3 only). Off by
    default, for loopback."""
    TLS_KEY_FILE: FilePath | None = None
    OTLP_ENDPOINT: str = ""
    """Where to send traces (OTLP over HTTP, e.g. ``http://collector:4318/v1/traces``); empty:
    spans are not recorded, but the caller's ``traceparent`` is still carried to the workers."""
    MEDIA_MAX_BYTES: int = Field(default=50 * 1024 * 1024, ge=1, le=2 * 1024**3)
    """The largest upload (``POST /v1/media``, gRPC ``UploadMedia``); 50 MB is what a bot may
    upload to Telegram (photos: 10 MB, checked when a message is sent)."""
    MEDIA_DIR: Path | None = None
    """Where uploads are kept (by content, a directory per tenant); empty: DATA_DIR/media.
    Processes that share one database must share this directory too (a network file system,
    or one volume) so that media one accepted another can send."""
    OUTBOX_LEASE: float = Field(default=30.0, ge=1.0, le=3600.0)
    """Seconds a dispatcher holds a claimed message without renewing it (it renews every third
    of it while delivering). A process that dies leaves its in-flight messages to the others
    after this long; they may reach the provider twice."""
    WEBHOOK_ALLOW_PRIVATE: bool = False
    """Allow client webhooks to loopback, private and link-local addresses (receivers on the
    internal network, tests). Off: such URLs are refused at subscription, and a delivery whose
    host resolves to one fails (retried, then dead-lettered)."""
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    LOG_FORMAT: Literal["text", "json"] = "text"

    @field_validator(
        "TELEGRAM_WEBHOOK_SECRET", "TLS_CERT_FILE", "TLS_KEY_FILE", "MEDIA_DIR", mode="before"
    )
    @classmethod
    def _unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("TELEGRAM_BOTS", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        if value in ("", None):
            return {}
        if isinstance(value, dict):  # a bare token is {"token": ...}
            return {k: {"token": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.TLS_CERT_FILE is None) != (self.TLS_KEY_FILE is None):
            raise ValueError(
                "set both CHAT4ALL_TLS_CERT_FILE and CHAT4ALL_TLS_KEY_FILE, or neither"
            )
        return self

    @property
    def database_url(self) -> str:
        if self.DATABASE_URL:
            return self.DATABASE_URL
        return f"sqlite+aiosqlite:///{self.DATA_DIR / 'chat4all.db'}"

    @property
    def database_shown(self) -> str:
        """The database URL without its password, for logs and errors."""
        return sa.make_url(self.database_url).render_as_string(hide_password=True)

    @property
    def media_dir(self) -> Path:
        """Where uploads are kept (``MEDIA_DIR``, else DATA_DIR/media)."""
        return self.MEDIA_DIR if self.MEDIA_DIR is not None else self.DATA_DIR / "media"

    @property
    def embedded_simulator(self) -> bool:
        return not self.TELEGRAM_BOTS

    def secrets(self) -> list[str]:
        values = [bot.token.get_secret_value() for bot in self.TELEGRAM_BOTS.values()]
        if self.TELEGRAM_WEBHOOK_SECRET is not None:
            values.append(self.TELEGRAM_WEBHOOK_SECRET.get_secret_value())
        return values


def load_settings(env_file: Path | None = Path(".env"), **overrides: Any) -> Settings:
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        first = exc.errors()[0]
        key = "CHAT4ALL_" + ".".join(str(p) for p in first["loc"]) if first["loc"] else "settings"
        raise InvalidRequest(f"{key}: {first['msg']}", field=key) from None
