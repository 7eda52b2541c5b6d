"""Messenger's and Instagram's settings, ``CHAT4ALL_MESSENGER_*`` and ``CHAT4ALL_INSTAGRAM_*``.

An account is one Page (Messenger: its ``page_id`` and a Page access token) or one Instagram
professional account (Instagram: its ``ig_id`` and an Instagram user access token). The app
secret checks every webhook's ``X-Hub-Signature-256``; the verify token answers Meta's
subscription handshake. Unset, both are random (shared with the simulator on the embedded
default).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from pydantic import Field, SecretStr, field_validator

from chat4all.adapters.channels.graph import DEFAULT_VERSION, VERSION
from chat4all.adapters.channels.messenger.platform import INSTAGRAM, MESSENGER
from chat4all.plugin import AccountSettings, ChannelSettings

__all__ = [
    "MessengerAccount",
    "MessengerSettings",
    "InstagramAccount",
    "InstagramSettings",
    "SendApiAccount",
    "SendApiSettings",
]


def _random() -> SecretStr:
    return SecretStr(secrets.token_urlsafe(24))


class SendApiAccount(AccountSettings):
    token: SecretStr

    @property
    def provider_id(self) -> str:
        raise NotImplementedError


class MessengerAccount(SendApiAccount):
    """One Page: ``{"page_id": "...", "token": "<Page access token>", "tenant": "acme"}``."""

    page_id: str = Field(pattern=r"^[0-9]{1,32}$")

    @property
    def provider_id(self) -> str:
        return self.page_id


class InstagramAccount(SendApiAccount):
    """One Instagram professional account: ``{"ig_id": "...", "token": "<Instagram user
    access token>", "tenant": "acme"}``."""

    ig_id: str = Field(pattern=r"^[0-9]{1,32}$")

    @property
    def provider_id(self) -> str:
        return self.ig_id


class SendApiSettings(ChannelSettings):
    API_URL: str
    """The Graph host (Messenger: graph.facebook.com, Instagram: graph.instagram.com)."""
    API_VERSION: str = DEFAULT_VERSION
    """The Graph API version in every path (``v{N}.0``)."""
    APP_SECRET: SecretStr = Field(default_factory=_random)
    """The Meta app's secret: every webhook's X-Hub-Signature-256 is checked with it."""
    VERIFY_TOKEN: SecretStr = Field(default_factory=_random)
    """What we expect in ``hub.verify_token`` when Meta verifies the webhook."""

    @field_validator("API_VERSION")
    @classmethod
    def _version(cls, value: str) -> str:
        if not VERSION.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a Graph API version; write it as v{{N}}.0, e.g. v25.0"
            )
        return value

    @field_validator("APP_SECRET", "VERIFY_TOKEN", mode="before")
    @classmethod
    def _unset(cls, value: Any) -> Any:
        return _random() if value in ("", None) else value

    def accounts(self) -> Mapping[str, SendApiAccount]:
        raise NotImplementedError


class MessengerSettings(SendApiSettings):
    ACCOUNTS: dict[str, MessengerAccount] = Field(default_factory=dict)
    """Our Pages, JSON: ``{"account": {"page_id": "...", "token": "...", "tenant": "..."}}``."""
    API_URL: str = MESSENGER.api_url

    def accounts(self) -> Mapping[str, MessengerAccount]:
        return self.ACCOUNTS


class InstagramSettings(SendApiSettings):
    ACCOUNTS: dict[str, InstagramAccount] = Field(default_factory=dict)
    """Our Instagram accounts, JSON: ``{"account": {"ig_id": "...", "token": "...",
    "tenant": "..."}}``."""
    API_URL: str = INSTAGRAM.api_url

    def accounts(self) -> Mapping[str, InstagramAccount]:
        return self.ACCOUNTS
