"""CHAT4ALL_* settings as an operator writes them: channel accounts with their tenants."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chat4all.adapters.channels.telegram import TelegramSettings
from chat4all.config import Settings, load_settings
from chat4all.errors import InvalidRequest, NotFound
from chat4all.service_layer.accounts import Accounts


def telegram(settings: Settings) -> TelegramSettings:
    values = settings.channels["telegram"].settings
    assert isinstance(values, TelegramSettings)
    return values


@pytest.mark.parametrize("key", ["CHAT4ALL_TELEGRAM_ACCOUNTS", "CHAT4ALL_TELEGRAM_BOTS"])
def test_bots_are_a_bare_token_or_a_token_with_its_tenant(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv(
        key,
        '{"support": "111:aaaaaaaaaaaa", "sales": {"token": "222:bbbbbbbbbbbb", "tenant": "acme"}}',
    )
    settings = load_settings(None)
    accounts = telegram(settings).accounts()
    assert accounts["support"].tenant is None
    assert accounts["sales"].tenant == "acme"
    secret = telegram(settings).WEBHOOK_SECRET.get_secret_value()
    # every channel installed adds its own (generated) secrets beside Telegram's
    assert {"111:aaaaaaaaaaaa", "222:bbbbbbbbbbbb", secret} <= set(settings.secrets())
    assert "bbbbbbbbbbbb" not in repr(settings.channels)  # tokens are secrets, never printed
    assert not settings.simulators


@pytest.mark.parametrize(
    "value",
    ['{"sales": {"tokn": "x"}}', '{"sales": {"token": "x", "tenant": ""}}', "[1, 2]"],
)
def test_a_malformed_bot_entry_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CHAT4ALL_TELEGRAM_BOTS", value)
    with pytest.raises(InvalidRequest) as caught:
        load_settings(None)
    assert "CHAT4ALL_TELEGRAM_BOTS" in str(caught.value)
    assert (caught.value.field or "").startswith("CHAT4ALL_TELEGRAM_BOTS")


def test_an_account_setting_names_its_key_down_to_the_field(tmp_path: Path) -> None:
    env = tmp_path / "settings.env"
    env.write_text('CHAT4ALL_TELEGRAM_ACCOUNTS={"sales": {"tenant": "acme"}}\n')
    with pytest.raises(InvalidRequest) as caught:
        load_settings(env)
    assert caught.value.field == "CHAT4ALL_TELEGRAM_ACCOUNTS.sales.token"


def test_the_old_and_the_new_name_together_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT4ALL_TELEGRAM_ACCOUNTS", '{"a": "1:x"}')
    monkeypatch.setenv("CHAT4ALL_TELEGRAM_BOTS", '{"b": "2:y"}')
    with pytest.raises(InvalidRequest, match="CHAT4ALL_TELEGRAM_BOTS, not both"):
        load_settings(None)


def test_simulators_run_on_the_embedded_default_or_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings(None).simulators  # no account anywhere
    assert not load_settings(None, SIMULATORS=False).simulators
    monkeypatch.setenv("CHAT4ALL_TELEGRAM_ACCOUNTS", '{"a": "1:x"}')
    assert not load_settings(None).simulators
    assert load_settings(None, SIMULATORS=True).simulators


def test_a_channel_setting_is_given_by_its_name_without_the_prefix() -> None:
    settings = load_settings(None, TELEGRAM_POLLING=True, TELEGRAM_API_URL="http://127.0.0.1:1")
    assert telegram(settings).POLLING is True
    assert telegram(settings).API_URL == "http://127.0.0.1:1"
    with pytest.raises(InvalidRequest) as caught:
        load_settings(None, TELEGRAM_POLLING="perhaps")
    assert caught.value.field == "CHAT4ALL_TELEGRAM_POLLING"


def test_idempotency_is_remembered_at_least_a_day() -> None:
    with pytest.raises(InvalidRequest, match="CHAT4ALL_IDEMPOTENCY_HOURS"):
        load_settings(None, IDEMPOTENCY_HOURS=12)


def test_an_account_belongs_to_one_tenant() -> None:
    accounts = Accounts({("telegram", "sales"): "acme"}, ["telegram", "whatsapp"])
    accounts.check("acme", "telegram", "sales")
    with pytest.raises(InvalidRequest) as refused:
        accounts.check("globex", "telegram", "sales")
    assert refused.value.field == "account"
    with pytest.raises(InvalidRequest):
        accounts.check("acme", "whatsapp", "sales")  # same name, other channel
    assert accounts.owner("telegram", "sales") == "acme"
    with pytest.raises(NotFound):
        accounts.owner("telegram", "nobody")


def test_accounts_know_every_channel_and_each_tenants_accounts() -> None:
    accounts = Accounts(
        {("telegram", "sales"): "acme", ("telegram", "help"): "acme", ("echo", "e"): "globex"},
        ["telegram", "echo", "whatsapp"],
    )
    assert accounts.channels() == ("echo", "telegram", "whatsapp")
    assert accounts.of("acme") == {"telegram": ("help", "sales")}
    assert accounts.known("echo") == "echo"
    with pytest.raises(InvalidRequest) as refused:
        accounts.check("acme", "fax", "sales")
    assert refused.value.field == "channel"


@pytest.mark.parametrize("value", ["{not json", ""])
def test_accounts_that_are_not_json_name_the_key_and_empty_is_none(
    tmp_path: Path, value: str
) -> None:
    env = tmp_path / "settings.env"
    env.write_text(f"CHAT4ALL_TELEGRAM_ACCOUNTS={value}\nCHAT4ALL_SIMULATORS=\n")
    if value:
        with pytest.raises(InvalidRequest) as caught:
            load_settings(env)
        assert caught.value.field == "CHAT4ALL_TELEGRAM_ACCOUNTS"
    else:  # as the .env.template leaves it
        settings = load_settings(env)
        assert telegram(settings).accounts() == {}
        assert settings.simulators


S3_SECRET = "wJalrXUtnFEMI-secret"


def test_the_s3_media_backend_is_checked_at_load_naming_the_setting() -> None:
    assert load_settings(None).MEDIA_BACKEND == "file"  # the default: no bucket needed
    good = load_settings(
        None,
        MEDIA_BACKEND="s3",
        S3_ENDPOINT_URL="https://s3.example.org/",
        S3_BUCKET="media.chat4all",
        S3_ACCESS_KEY_ID="AKIAEXAMPLE",
        S3_SECRET_ACCESS_KEY=S3_SECRET,
        S3_PREFIX="/hub/media/",
    )
    assert (good.S3_ENDPOINT_URL, good.S3_PREFIX) == ("https://s3.example.org", "hub/media/")
    assert S3_SECRET in good.secrets()  # masked in every log line
    assert S3_SECRET not in repr(good)
    refused = {
        "CHAT4ALL_S3_BUCKET": {"MEDIA_BACKEND": "s3"},
        "not a bucket name": {"S3_BUCKET": "Media_Bucket"},
        "not an http(s) URL": {"S3_ENDPOINT_URL": "s3.example.org"},
        "or neither": {"S3_ACCESS_KEY_ID": "AKIAEXAMPLE"},
        "CHAT4ALL_MEDIA_BACKEND": {"MEDIA_BACKEND": "gcs"},
        "CHAT4ALL_S3_PART_SIZE": {"S3_PART_SIZE": 1024},
    }
    for said, values in refused.items():
        with pytest.raises(InvalidRequest, match=re.escape(said)):
            load_settings(None, **values)


def test_the_read_replica_and_load_shedding_settings_are_checked_naming_the_key() -> None:
    default = load_settings(None)
    assert (default.SHED_OUTBOX_AGE, default.SHED_OUTBOX_DEPTH) == (60.0, 0)
    assert default.database_read_url == default.database_url  # no replica: the database itself
    primary = "postgresql+asyncpg://hub@db-primary/hub"
    replica = "postgresql+asyncpg://hub@db-replica/hub"
    both = load_settings(None, DATABASE_URL=primary, DATABASE_READ_URL=replica)
    assert both.database_read_url == replica
    with pytest.raises(InvalidRequest) as alone:
        load_settings(None, DATABASE_READ_URL=replica)
    assert "CHAT4ALL_DATABASE_READ_URL" in str(alone.value)
    assert "CHAT4ALL_DATABASE_URL" in str(alone.value)
    for key, value in (("SHED_OUTBOX_AGE", -1), ("SHED_OUTBOX_DEPTH", "many")):
        with pytest.raises(InvalidRequest) as refused:
            load_settings(None, **{key: value})
        assert refused.value.field == f"CHAT4ALL_{key}"


PG = "postgresql+asyncpg://u@db/chat4all"


def test_the_partitioned_log_needs_postgresql_and_consistent_timings() -> None:
    with pytest.raises(InvalidRequest, match="CHAT4ALL_NATS_URL needs PostgreSQL"):
        load_settings(None, NATS_URL="nats://127.0.0.1:4222")
    with pytest.raises(InvalidRequest, match=r"NATS_DUPLICATE_WINDOW .* must exceed"):
        load_settings(None, NATS_URL="nats://n:4222", DATABASE_URL=PG, NATS_DUPLICATE_WINDOW=30)
    with pytest.raises(InvalidRequest, match=r"NATS_ACK_WAIT .* must exceed a third"):
        load_settings(None, NATS_URL="nats://n:4222", DATABASE_URL=PG, NATS_ACK_WAIT=5)
    with pytest.raises(InvalidRequest, match="CHAT4ALL_PARTITIONS"):
        load_settings(None, PARTITIONS=5000)
    with pytest.raises(InvalidRequest, match="CHAT4ALL_NATS_STREAM"):
        load_settings(None, NATS_STREAM="a.b")
    settings = load_settings(None, NATS_URL="nats://n:4222", DATABASE_URL=PG)
    assert (settings.PARTITIONS, settings.NATS_DUPLICATE_WINDOW) == (16, 120.0)
    assert load_settings(None).NATS_URL == ""  # the embedded default: no log


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("REDIS_URL", "http://redis:6379", "not a Redis URL"),
        ("REDIS_URL", "127.0.0.1:6379", "not a Redis URL"),
        ("REDIS_PREFIX", "", "1 to 64 printable characters"),
        ("REDIS_PREFIX", "chat 4all:", "without spaces"),
        ("REDIS_TIMEOUT", "0", "greater than 0"),
        ("RATE_PER_TENANT", "-1", "greater than or equal to 0"),
    ],
)
def test_a_bad_redis_or_rate_setting_names_its_key(key: str, value: str, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says) as caught:
        load_settings(None, **{key: value})
    assert caught.value.field == f"CHAT4ALL_{key}"


def test_the_redis_password_is_a_secret_never_shown() -> None:
    settings = load_settings(None, REDIS_URL="redis://:s3cr3t-pass@redis.internal:6379/2")
    assert settings.redis_shown == "redis://:***@redis.internal:6379/2"
    assert "s3cr3t-pass" in settings.secrets()
    plain = load_settings(None, REDIS_URL="rediss://redis.internal:6380/0")
    assert plain.redis_shown == "rediss://redis.internal:6380/0"
    assert load_settings(None).REDIS_URL == ""  # off by default: the embedded hub needs none


def test_the_postgresql_pool_and_timeouts_have_production_defaults_and_name_a_bad_key() -> None:
    default = load_settings(None)
    assert (default.DATABASE_POOL_SIZE, default.DATABASE_MAX_OVERFLOW) == (5, 10)
    assert (default.DATABASE_POOL_TIMEOUT, default.DATABASE_CONNECT_TIMEOUT) == (10.0, 5.0)
    assert default.DATABASE_STATEMENT_TIMEOUT == 30.0
    assert load_settings(None, DATABASE_STATEMENT_TIMEOUT="0").DATABASE_STATEMENT_TIMEOUT == 0
    refused = {
        "DATABASE_POOL_SIZE": ("0", "greater than or equal to 1"),
        "DATABASE_MAX_OVERFLOW": ("-1", "greater than or equal to 0"),
        "DATABASE_POOL_TIMEOUT": ("0", "greater than 0"),
        "DATABASE_CONNECT_TIMEOUT": ("soon", "valid number"),
        "DATABASE_STATEMENT_TIMEOUT": ("0.2", "at least 1 second"),
    }
    for key, (value, says) in refused.items():
        with pytest.raises(InvalidRequest, match=says) as caught:
            load_settings(None, **{key: value})
        assert caught.value.field == f"CHAT4ALL_{key}"
