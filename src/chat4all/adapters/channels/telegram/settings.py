"""Telegram's settings, ``CHAT4ALL_TELEGRAM_*``."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from chat4all.adapters.channels.telegram.connector import DEFAULT_API
from chat4all.plugin import AccountSettings, ChannelSettings

__all__ = ["TelegramAccount", "TelegramSettings"]


class TelegramAccount(AccountSettings):
    """One bot of ours: its token (from @BotFather) and its tenant."""

    token: SecretStr


class TelegramSettings(ChannelSettings):
    ACCOUNTS: dict[str, TelegramAccount] = Field(default_factory=dict)
    """Our bots, JSON: ``{"account": {"token": "...", "tenant": "acme"}}`` (or a bare token,
    ``{"account": "token"}``, for the default tenant)."""
    BOTS: dict[str, TelegramAccount] = Field(default_factory=dict)
    """The former name of ACCOUNTS (still read; set one of them)."""
    API_URL: str = DEFAULT_API
    WEBHOOK_SECRET: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(24)))
    """The secret_token given to setWebhook; Telegram sends it back with every update. Unset:
    a random one (shared with the simulator on the embedded default)."""
    POLLING: bool = False
    """Receive updates with getUpdates long polling instead of the webhook."""

    @field_validator("ACCOUNTS", "BOTS", mode="before")
    @classmethod
    def _bare_tokens(cls, value: Any) -> Any:
        if value in ("", None):
            return {}
        if isinstance(value, dict):  # a bare token is {"token": ...}
            return {k: {"token": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("WEBHOOK_SECRET", mode="before")
    @classmethod
    def _unset(cls, value: Any) -> Any:
        return SecretStr(secrets.token_urlsafe(24)) if value in ("", None) else value

    @model_validator(mode="after")
    def _one_name(self) -> TelegramSettings:
        if self.ACCOUNTS and self.BOTS:
            raise ValueError(
                "set CHAT4ALL_TELEGRAM_ACCOUNTS or its former name CHAT4ALL_TELEGRAM_BOTS, not both"
            )
        return self

    def accounts(self) -> Mapping[str, TelegramAccount]:
        return self.ACCOUNTS or self.BOTS
