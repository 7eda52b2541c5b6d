"""Messenger and Instagram as plugins: one :class:`SendApiChannel` each, told apart by their
:class:`~chat4all.adapters.channels.messenger.platform.Platform` and settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Generic, TypeVar

from pydantic import SecretStr

from chat4all.adapters.channels.messenger.connector import (
    SENDER_ACTIONS,
    Credentials,
    SendApiConnector,
)
from chat4all.adapters.channels.messenger.platform import (
    INSTAGRAM,
    MESSENGER,
    QUICK_REPLIES,
    Platform,
)
from chat4all.adapters.channels.messenger.sendapi import OPTIONS
from chat4all.adapters.channels.messenger.settings import (
    InstagramAccount,
    InstagramSettings,
    MessengerAccount,
    MessengerSettings,
    SendApiAccount,
    SendApiSettings,
)
from chat4all.adapters.channels.messenger.simulator import SendApiSimulator
from chat4all.adapters.channels.messenger.webhook import SendApiReceiver
from chat4all.domain.model import ContentKind
from chat4all.plugin import SIMULATOR_ACCOUNT, ChannelPlugin, Deliver, Limits, Poller
from chat4all.ports import MediaStore

__all__ = ["SendApiChannel", "MESSENGER_CHANNEL", "INSTAGRAM_CHANNEL", "SIMULATOR_IDS"]

S = TypeVar("S", bound=SendApiSettings)

SIMULATOR_IDS: Final = {"messenger": "100000000000001", "instagram": "17841400000000001"}
"""The provider id of the embedded default's account (``sim-bot``) on each simulator."""
SIMULATOR_TOKENS: Final = {
    "messenger": "EAAsimulated-page-token-for-the-embedded-default",
    "instagram": "IGAAsimulated-user-token-for-the-embedded-default",
}


def limits_of(platform: Platform) -> Limits:
    content = {
        ContentKind.TEXT,
        ContentKind.ATTACHMENTS,
        ContentKind.REPLY,
        ContentKind.REACTION,
        ContentKind.QUICK_REPLIES,
    }
    if platform.buttons:
        content.add(ContentKind.BUTTONS)
    return Limits(
        text=platform.text,
        caption=platform.text,
        attachments=10,
        buttons=platform.buttons,
        kinds=frozenset(platform.types),
        max_bytes=dict(platform.max_bytes),
        location=False,
        templates=False,
        content=frozenset(content),
        text_bytes=platform.text if platform.text_in_bytes else None,
        titles=20,  # a quick reply's and a button's title
        quick_replies=QUICK_REPLIES,
        options=OPTIONS[platform.channel],
        actions=frozenset(a.value for a in SENDER_ACTIONS),
    )


class SendApiChannel(Generic[S]):
    def __init__(self, platform: Platform, settings: type[S], account: type[SendApiAccount]):
        self.platform = platform
        self.name = platform.channel
        self.limits = limits_of(platform)
        self.settings = settings
        self._account = account

    def simulated(self, settings: S, api_url: str) -> S:
        fields: dict[str, Any] = {
            "token": SecretStr(SIMULATOR_TOKENS[self.name]),
            self.platform.account_field: SIMULATOR_IDS[self.name],
        }
        account = self._account(**fields)
        return settings.model_copy(
            update={"ACCOUNTS": {SIMULATOR_ACCOUNT: account}, "API_URL": api_url}
        )

    def simulator(self, settings: S) -> SendApiSimulator:
        accounts = {a.provider_id: a.token.get_secret_value() for a in settings.accounts().values()}
        return SendApiSimulator(
            self.platform,
            accounts or {SIMULATOR_IDS[self.name]: SIMULATOR_TOKENS[self.name]},
            settings.APP_SECRET.get_secret_value(),
        )

    def connector(self, settings: S, media: MediaStore | None) -> SendApiConnector:
        accounts = {
            name: Credentials(a.provider_id, a.token.get_secret_value())
            for name, a in settings.accounts().items()
        }
        return SendApiConnector(
            self.platform,
            accounts,
            api_url=settings.API_URL,
            version=settings.API_VERSION,
            media=media,
        )

    def receiver(self, settings: S) -> SendApiReceiver:
        return SendApiReceiver(
            self.platform,
            settings.APP_SECRET.get_secret_value(),
            settings.VERIFY_TOKEN.get_secret_value(),
            {name: a.provider_id for name, a in settings.accounts().items()},
        )

    def pollers(self, settings: S, deliver: Deliver) -> Sequence[Poller]:
        return ()


MESSENGER_CHANNEL: Final[ChannelPlugin[MessengerSettings]] = SendApiChannel(
    MESSENGER, MessengerSettings, MessengerAccount
)
INSTAGRAM_CHANNEL: Final[ChannelPlugin[InstagramSettings]] = SendApiChannel(
    INSTAGRAM, InstagramSettings, InstagramAccount
)
