"""chat4all settings (``CHAT4ALL_*`` from the environment or ``.env``); nothing read at import.

The hub's own settings are :class:`Settings`; each channel's are its plugin's model, read from
``CHAT4ALL_<CHANNEL>_*`` by :func:`load_settings` (see :mod:`chat4all.plugin`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import sqlalchemy as sa
from pydantic import (
    Field,
    FilePath,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from chat4all.errors import InvalidRequest
from chat4all.plugin import ChannelPlugin, ChannelSettings
from chat4all.registry import Registry

__all__ = ["Settings", "ChannelConfig", "load_settings"]

_S = TypeVar("_S", bound=BaseSettings)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """One channel: its plugin and its settings as configured."""

    plugin: ChannelPlugin[Any]
    settings: ChannelSettings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHAT4ALL_", env_file=".env", extra="ignore", case_sensitive=False
    )

    DATABASE_URL: str = ""
    """SQLAlchemy URL; empty: SQLite in DATA_DIR (the embedded default)."""
    DATABASE_READ_URL: str = ""
    """SQLAlchemy URL of a read replica of DATABASE_URL (PostgreSQL): the read-only queries
    (a message, listing conversations and their messages) go there; empty: to DATABASE_URL.
    It is never migrated nor written."""
    DATABASE_POOL_SIZE: int = Field(default=5, ge=1, le=1000)
    """PostgreSQL: connections each process keeps open to the database (and as many to the
    read replica)."""
    DATABASE_MAX_OVERFLOW: int = Field(default=10, ge=0, le=1000)
    """PostgreSQL: connections a process opens beyond DATABASE_POOL_SIZE under load, closed
    once given back; a process holds at most the sum of both."""
    DATABASE_POOL_TIMEOUT: float = Field(default=10.0, gt=0, le=600)
    """PostgreSQL: seconds a request waits for a free connection while all are in use; past it
    the request is answered 503 (retry)."""
    DATABASE_CONNECT_TIMEOUT: float = Field(default=5.0, gt=0, le=600)
    """PostgreSQL: seconds to open a connection (TCP, TLS, authentication); past it: 503."""
    DATABASE_STATEMENT_TIMEOUT: float = Field(default=30.0, ge=0, le=86_400)
    """PostgreSQL: seconds one statement may run, waiting for locks included (the server's
    ``statement_timeout``; the client itself gives up 2 s later, for a server that cannot
    answer at all); past it the request is answered 503 (retry). 0: no limit. Migrations run
    without it."""
    SQLITE_BUSY_MS: int = Field(default=5000, ge=100, le=600_000)
    """SQLite only: how long a write waits for another writer's lock before the request is
    answered 503 (retry) instead."""
    DATA_DIR: Path = Path(".chat4all")
    HOST: str = "127.0.0.1"
    PORT: int = Field(default=8000, ge=0, le=65535)
    GRPC_PORT: int = Field(default=50051, ge=0, le=65535)
    DEFAULT_TENANT: str = "default"
    """The tenant that owns the configured channel accounts (and the first admin key)."""
    SIMULATORS: bool | None = None
    """Run the channels' simulators (each channel with no account gets one, named sim-bot).
    Unset: only while no channel has an account (the embedded default)."""
    SIMULATOR_PORT: int = Field(default=8081, ge=0, le=65535)
    """Where the simulators are served, each under /<channel>."""
    RATE_PER_KEY: int = Field(default=100, ge=0, le=1_000_000)
    """Requests a minute per API key (token bucket, bursts up to that); 0 turns it off."""
    RATE_PER_TENANT: int = Field(default=0, ge=0, le=100_000_000)
    """Requests a minute for all keys of one tenant together (bursts up to that); 0 turns it
    off."""
    RATE_GLOBAL: int = Field(default=0, ge=0, le=100_000_000)
    """Requests a minute for all keys together; 0 turns it off."""
    REDIS_URL: str = ""
    """The Redis every API process shares (``redis://[:password@]host:6379/0``, ``rediss://``
    for TLS, ``unix:///path``): the rate limits are kept there (across processes, not per
    process), completed Idempotency-Keys' answers are cached there, and live events reach the
    SSE and gRPC streams of every API process through it (one subscription per process).
    Empty: none of these (each process limits on its own, and its streams see only the events
    of the changes it made; the embedded default)."""
    REDIS_PREFIX: str = "chat4all:"
    """The start of every key the hub keeps in Redis, and of its live events' channel (several
    hubs can share one Redis)."""
    REDIS_TIMEOUT: float = Field(default=0.5, gt=0, le=30)
    """Seconds to connect to Redis, for it to answer, or to wait for a free connection; past
    it the request goes on without Redis (see the operations manual, "Rate limits")."""
    IDEMPOTENCY_HOURS: int = Field(default=24, ge=24, le=24 * 366)
    """How long an Idempotency-Key (and a provider's update id, and a stored live event a stream
    can resume from) is remembered; at least 24."""
    MAX_ATTEMPTS: int = Field(default=8, ge=1, le=100)
    TLS_CERT_FILE: FilePath | None = None
    """PEM certificate chain: with TLS_KEY_FILE, both APIs serve TLS (REST: 1.3 only). Off by
    default, for loopback."""
    TLS_KEY_FILE: FilePath | None = None
    OTLP_ENDPOINT: str = ""
    """Where to send traces (OTLP over HTTP, e.g. ``http://collector:4318/v1/traces``); empty:
    spans are not recorded, but the caller's ``traceparent`` is still carried to the workers."""
    MEDIA_MAX_BYTES: int = Field(default=50 * 1024 * 1024, ge=1, le=2 * 1024**3)
    """The largest upload (``POST /v1/media``, gRPC ``UploadMedia``); a channel's own smaller
    limits (by kind) are checked when a message is sent."""
    UPLOAD_TTL_HOURS: float = Field(default=24, gt=0, le=24 * 30)
    """Hours an unfinished resumable upload is kept after its last chunk; then the hourly
    housekeeping deletes it (its staged bytes with it) and it answers 404, saying so."""
    MEDIA_DIR: Path | None = None
    """Where uploads are kept with MEDIA_BACKEND=file (by content, a directory per tenant), and
    resumable uploads staged (``.uploads``); empty: DATA_DIR/media. Processes that share one
    database must share this directory too (a network file system, or one volume) so that media
    one accepted another can send. Unused with MEDIA_BACKEND=s3 (the bucket and the database
    hold both)."""
    MEDIA_BACKEND: Literal["file", "s3"] = "file"
    """Where uploads are kept, finished and resumable ones being received: ``file`` (MEDIA_DIR)
    or ``s3`` (an S3-compatible bucket, the S3_* settings, the staged uploads' state in the
    database: no process needs a disk; needs the ``s3`` extra)."""
    S3_ENDPOINT_URL: str = ""
    """The S3-compatible service's URL (MinIO, Ceph, R2 ...: ``https://s3.example.org``);
    empty: Amazon S3 itself."""
    S3_BUCKET: str = ""
    """The bucket (it must exist; ``chat4all serve`` checks it at start)."""
    S3_REGION: str = ""
    """The bucket's region; empty: the AWS SDK's own default (``AWS_REGION``, its config)."""
    S3_ACCESS_KEY_ID: str = ""
    """With S3_SECRET_ACCESS_KEY; both empty: the AWS SDK's credential chain (environment,
    shared credentials file, instance or task role)."""
    S3_SECRET_ACCESS_KEY: SecretStr | None = None
    S3_PREFIX: str = ""
    """A key prefix for everything the hub stores in the bucket (``chat4all/``); empty: none."""
    S3_PART_SIZE: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024, le=512 * 1024 * 1024)
    """Bytes per part of a multipart upload (S3's minimum is 5 MiB); an upload holds at most
    two parts in memory. A file smaller than one part goes in one PUT. A resumable upload's
    chunk larger than this is staged as objects of this size, smaller ones of one gRPC call
    gathered into one (at most two in memory)."""
    MEDIA_PUBLIC_URL: str = ""
    """The public base URL under which this hub's ``/v1/public/media/...`` route is reachable
    by providers (e.g. ``https://hub.example.org``); empty: an attachment over a channel's limit
    cannot be sent as a link (only refused)."""
    MEDIA_LINK_SECRET: SecretStr | None = None
    """The key (at least 16 characters) that signs media links; every process of one hub must
    share it. Unset: no links."""
    MEDIA_LINK_TTL: int = Field(default=24 * 3600, ge=60, le=7 * 24 * 3600)
    """Seconds a media link stays valid."""
    OUTBOX_LEASE: float = Field(default=30.0, ge=1.0, le=3600.0)
    """Seconds a worker holds a claimed message (or webhook delivery) without renewing it (it
    renews every third of it while delivering). A process that dies leaves its in-flight
    messages to the others after this long; they may reach the provider twice."""
    SHED_OUTBOX_AGE: float = Field(default=60.0, ge=0, le=86_400)
    """Load shedding: once the oldest message the workers could send now has waited longer
    than this many seconds, sends are refused (503 with Retry-After, gRPC UNAVAILABLE) until
    it is back under half of it; 0 turns it off."""
    SHED_OUTBOX_DEPTH: int = Field(default=0, ge=0, le=100_000_000)
    """Load shedding: once more than this many messages wait for delivery, sends are refused
    until fewer than half of it wait; 0 (the default) turns it off."""
    NATS_URL: str = ""
    """NATS server(s) with JetStream (``nats://host:4222``, several comma-separated): the
    outbox is relayed to a partitioned log and the workers claim through it; needs PostgreSQL.
    Empty: the workers claim straight from the database (the embedded default)."""
    NATS_STREAM: str = Field(default="chat4all", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    """The JetStream stream's name, also its subjects' prefix (``<name>.outbox.<partition>``)
    and the name of its partition leases; hubs sharing a NATS server need one each."""
    PARTITIONS: int = Field(default=16, ge=1, le=4096)
    """Partitions of the log (a conversation always lands on one); at most this many workers
    consume at once. Changing it moves conversations between partitions: change it with the
    outbox drained."""
    NATS_REPLICAS: int = Field(default=1, ge=1, le=5)
    """Copies of the stream in the JetStream cluster (3 in production, across three nodes)."""
    NATS_DUPLICATE_WINDOW: float = Field(default=120.0, ge=1.0, le=3600.0)
    """Seconds the stream remembers a publication's id (a relay that died between publishing
    and recording publishes again; the copy is dropped). It is also the relay's republish
    horizon: a row published longer ago and still unclaimed is published again under a new id.
    Must exceed NATS_ACK_WAIT + PARTITION_LEASE."""
    NATS_ACK_WAIT: float = Field(default=30.0, ge=1.0, le=3600.0)
    """Seconds a worker holds an entry of the log without acknowledging it (renewed with its
    outbox lease while it delivers); then the log hands it out again."""
    NATS_MAX_DELIVER: int = Field(default=5, ge=1, le=100)
    """How many times the log hands out one entry; one handed out this often without an
    outcome is dead-lettered (a message that crashes the workers)."""
    PARTITION_LEASE: float = Field(default=10.0, ge=1.0, le=600.0)
    """Seconds a worker holds its partitions without renewing (it renews every third): a dead
    worker's partitions are taken over after this long."""
    WEBHOOK_ALLOW_PRIVATE: bool = False
    """Allow client webhooks to loopback, private and link-local addresses (receivers on the
    internal network, tests). Off: such URLs are refused at subscription, and a delivery whose
    host resolves to one fails (retried, then dead-lettered)."""
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    LOG_FORMAT: Literal["text", "json"] = "text"

    _channels: dict[str, ChannelConfig] = PrivateAttr(default_factory=dict)

    @field_validator(
        "SIMULATORS",
        "TLS_CERT_FILE",
        "TLS_KEY_FILE",
        "MEDIA_DIR",
        "MEDIA_LINK_SECRET",
        "S3_SECRET_ACCESS_KEY",
        mode="before",
    )
    @classmethod
    def _unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        value = value.strip()
        if value and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                "not a Redis URL: give redis://host:6379/0 (rediss:// for TLS, unix:///path for "
                "a socket), or leave it empty for no Redis"
            )
        return value

    @field_validator("REDIS_PREFIX")
    @classmethod
    def _redis_prefix(cls, value: str) -> str:
        if not 1 <= len(value) <= 64 or any(ord(c) <= 32 or ord(c) == 127 for c in value):
            raise ValueError(
                "a key prefix is 1 to 64 printable characters without spaces (e.g. chat4all:)"
            )
        return value

    @field_validator("MEDIA_LINK_SECRET")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("the media link secret must be at least 16 characters")
        return value

    @field_validator("S3_ENDPOINT_URL")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value):
            raise ValueError(
                f"{value!r} is not an http(s) URL (e.g. https://s3.example.org); leave it empty "
                "for Amazon S3"
            )
        return value

    @field_validator("S3_BUCKET")
    @classmethod
    def _bucket(cls, value: str) -> str:
        value = value.strip()
        if value and not _BUCKET.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a bucket name (3 to 63 lower-case letters, digits, dots and "
                "hyphens, starting and ending with a letter or digit)"
            )
        return value

    @field_validator("S3_PREFIX")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip().strip("/")
        if len(value) > 256 or any(ord(c) < 32 or c == "\\" for c in value):
            raise ValueError("a key prefix is at most 256 printable characters, without \\")
        return value + "/" if value else ""

    @model_validator(mode="after")
    def _s3(self) -> Settings:
        if (not self.S3_ACCESS_KEY_ID) != (self.S3_SECRET_ACCESS_KEY is None):
            raise ValueError(
                "set both CHAT4ALL_S3_ACCESS_KEY_ID and CHAT4ALL_S3_SECRET_ACCESS_KEY, or neither "
                "(the AWS SDK's credential chain)"
            )
        if self.MEDIA_BACKEND == "s3" and not self.S3_BUCKET:
            raise ValueError(
                "CHAT4ALL_MEDIA_BACKEND=s3 needs CHAT4ALL_S3_BUCKET (the bucket's name)"
            )
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.TLS_CERT_FILE is None) != (self.TLS_KEY_FILE is None):
            raise ValueError(
                "set both CHAT4ALL_TLS_CERT_FILE and CHAT4ALL_TLS_KEY_FILE, or neither"
            )
        return self

    @model_validator(mode="after")
    def _read_url(self) -> Settings:
        if self.DATABASE_READ_URL and not self.DATABASE_URL:
            raise ValueError(
                "CHAT4ALL_DATABASE_READ_URL is a replica of CHAT4ALL_DATABASE_URL: set "
                "CHAT4ALL_DATABASE_URL too (the embedded SQLite database has no replica), or "
                "leave CHAT4ALL_DATABASE_READ_URL empty"
            )
        return self

    @field_validator("DATABASE_STATEMENT_TIMEOUT")
    @classmethod
    def _statement_timeout(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError(
                f"{value:g} s would cut the hub's own batches mid-way: give at least 1 second "
                "(30 by default), or 0 for no limit"
            )
        return value

    @model_validator(mode="after")
    def _log(self) -> Settings:
        if not self.NATS_URL:
            return self
        if sa.make_url(self.database_url).get_backend_name() != "postgresql":
            raise ValueError(
                "CHAT4ALL_NATS_URL needs PostgreSQL: set CHAT4ALL_DATABASE_URL to a "
                "postgresql+asyncpg:// URL, or leave CHAT4ALL_NATS_URL empty for the embedded "
                "dispatch from SQLite"
            )
        if self.NATS_DUPLICATE_WINDOW <= self.NATS_ACK_WAIT + self.PARTITION_LEASE:
            raise ValueError(
                f"CHAT4ALL_NATS_DUPLICATE_WINDOW ({self.NATS_DUPLICATE_WINDOW:g} s) must exceed "
                f"CHAT4ALL_NATS_ACK_WAIT + CHAT4ALL_PARTITION_LEASE "
                f"({self.NATS_ACK_WAIT + self.PARTITION_LEASE:g} s): it is the relay's republish "
                "horizon, and an entry may wait that long for a worker"
            )
        if self.NATS_ACK_WAIT <= self.OUTBOX_LEASE / 3:
            raise ValueError(
                f"CHAT4ALL_NATS_ACK_WAIT ({self.NATS_ACK_WAIT:g} s) must exceed a third of "
                f"CHAT4ALL_OUTBOX_LEASE ({self.OUTBOX_LEASE / 3:g} s), how often a worker "
                "renews what it delivers"
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
    def database_read_url(self) -> str:
        """Where read-only queries go: DATABASE_READ_URL, else the database itself."""
        return self.DATABASE_READ_URL or self.database_url

    @property
    def redis_shown(self) -> str:
        """The Redis URL without its password, for logs and errors."""
        parts = urlsplit(self.REDIS_URL)
        if parts.password is None:
            return self.REDIS_URL
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()

    @property
    def media_dir(self) -> Path:
        """Where uploads are kept (``MEDIA_DIR``, else DATA_DIR/media)."""
        return self.MEDIA_DIR if self.MEDIA_DIR is not None else self.DATA_DIR / "media"

    @property
    def channels(self) -> Mapping[str, ChannelConfig]:
        """Every installed channel with its settings, by name (as :func:`load_settings` read
        them)."""
        return self._channels

    @property
    def simulators(self) -> bool:
        """Whether the channels without an account run against their simulators."""
        if self.SIMULATORS is not None:
            return self.SIMULATORS
        return not any(c.settings.accounts() for c in self._channels.values())

    def secrets(self) -> list[str]:
        own = [
            secret.get_secret_value()
            for secret in (self.MEDIA_LINK_SECRET, self.S3_SECRET_ACCESS_KEY)
            if secret is not None
        ]
        redis_password = urlsplit(self.REDIS_URL).password
        if redis_password:
            own.append(redis_password)
        return own + [s for c in self._channels.values() for s in c.settings.secrets()]


def load_settings(
    env_file: Path | None = Path(".env"), channels: Registry | None = None, **overrides: Any
) -> Settings:
    """The hub's settings and every channel's (``channels``: the installed plugins unless
    given). ``overrides`` as keys without ``CHAT4ALL_``; a channel's keys start with its name
    (``<NAME>_API_URL=...``). :class:`InvalidRequest` names the first bad key."""
    registry = Registry.discover() if channels is None else channels
    mine: dict[str, dict[str, Any]] = {plugin.name: {} for plugin in registry}
    core: dict[str, Any] = {}
    for key, value in overrides.items():
        name = next((n for n in mine if key.upper().startswith(f"{n.upper()}_")), None)
        if name is None:
            core[key] = value
        else:
            mine[name][key[len(name) + 1 :].upper()] = value
    settings = _validated("CHAT4ALL_", Settings, env_file, core)
    for plugin in registry:
        prefix = f"CHAT4ALL_{plugin.name.upper()}_"
        loaded = _validated(prefix, plugin.settings, env_file, mine[plugin.name])
        settings._channels[plugin.name] = ChannelConfig(plugin, loaded)
    return settings


def _validated(prefix: str, model: type[_S], env_file: Path | None, values: dict[str, Any]) -> _S:
    try:
        return model(_env_file=env_file, _env_prefix=prefix, **values)
    except SettingsError as exc:  # a value that is not JSON where JSON is expected
        field = re.search(r'field "([^"]+)"', str(exc))
        key = prefix + (field.group(1).upper() if field else "")
        raise InvalidRequest(f"{key}: not valid JSON", field=key) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        key = prefix + ".".join(str(p) for p in first["loc"]) if first["loc"] else prefix
        raise InvalidRequest(f"{key}: {first['msg']}", field=key) from None
