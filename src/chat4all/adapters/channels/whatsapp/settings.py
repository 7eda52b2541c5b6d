"""WhatsApp Cloud API settings, ``CHAT4ALL_WHATSAPP_*``."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, Final

from pydantic import Field, SecretStr, field_validator

from chat4all.adapters.channels.graph import DEFAULT_VERSION, check_version
from chat4all.plugin import AccountSettings, ChannelSettings

__all__ = ["WhatsAppAccount", "WhatsAppSettings", "DEFAULT_API"]

DEFAULT_API: Final = "https://graph.facebook.com"


class WhatsAppAccount(AccountSettings):
    """One business phone number of ours: its id (``PHONE_NUMBER_ID``; default: the account's
    name), a system-user access token, and optionally its own app secret and verify token
    (default: the channel's)."""

    phone_number_id: str | None = Field(default=None, min_length=1, max_length=64)
    access_token: SecretStr
    app_secret: SecretStr | None = None
    verify_token: SecretStr | None = None


class WhatsAppSettings(ChannelSettings):
    ACCOUNTS: dict[str, WhatsAppAccount] = Field(default_factory=dict)
    """Our phone numbers, JSON: ``{"sales": {"phone_number_id": "1069...", "access_token":
    "EAAG...", "tenant": "acme"}}``."""
    API_URL: str = DEFAULT_API
    API_VERSION: str = DEFAULT_VERSION
    APP_SECRET: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(24)))
    """The Meta app's secret: every webhook POST is signed with it (X-Hub-Signature-256).
    Unset: a random one (shared with the simulator on the embedded default)."""
    VERIFY_TOKEN: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(24)))
    """What Meta sends as ``hub.verify_token`` in the subscription handshake (set the same in
    the app's webhook settings)."""
    RATE: float = Field(default=80.0, gt=0)
    """Messages per second per phone number (Cloud API default throughput: 80)."""
    PAIR_INTERVAL: float = Field(default=6.0, ge=0)
    """Seconds to hold a recipient after a pair rate limit (131056: about one message every
    6 s to one user)."""
    PACE_SECONDS: float = Field(default=1.0, ge=0)
    """Seconds a phone number holds its sends after a throughput error (130429, 80007, 4)."""
    PAUSE_RETRY: float = Field(default=30.0, gt=0)
    """Seconds between looks at a paused account's waiting messages."""

    @field_validator("API_VERSION")
    @classmethod
    def _version(cls, value: str) -> str:
        return check_version(value, "CHAT4ALL_WHATSAPP_API_VERSION")

    @field_validator("APP_SECRET", "VERIFY_TOKEN", mode="before")
    @classmethod
    def _unset(cls, value: Any) -> Any:
        return SecretStr(secrets.token_urlsafe(24)) if value in ("", None) else value

    @field_validator("ACCOUNTS", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return {} if value in ("", None) else value

    def accounts(self) -> Mapping[str, WhatsAppAccount]:
        return self.ACCOUNTS

    def phone_number_id(self, account: str) -> str:
        config = self.ACCOUNTS[account]
        return config.phone_number_id or account

    def app_secret(self, account: str) -> str:
        config = self.ACCOUNTS.get(account)
        secret = config.app_secret if config and config.app_secret else self.APP_SECRET
        return secret.get_secret_value()

    def verify_token(self, account: str) -> str:
        config = self.ACCOUNTS.get(account)
        token = config.verify_token if config and config.verify_token else self.VERIFY_TOKEN
        return token.get_secret_value()
