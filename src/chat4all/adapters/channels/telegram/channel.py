"""The Telegram channel as a plugin: the Bot API's limits, settings and parts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from pydantic import SecretStr

from chat4all.adapters.channels.telegram.connector import NAME, TelegramConnector
from chat4all.adapters.channels.telegram.poller import TelegramPoller
from chat4all.adapters.channels.telegram.settings import TelegramAccount, TelegramSettings
from chat4all.adapters.channels.telegram.simulator import SIMULATOR_TOKEN, TelegramSimulator
from chat4all.adapters.channels.telegram.updates import TelegramReceiver
from chat4all.domain.model import ContentKind
from chat4all.plugin import (
    BASE_ATTACHMENTS,
    BASE_CONTENT,
    SIMULATOR_ACCOUNT,
    ChannelPlugin,
    Deliver,
    Limits,
)
from chat4all.ports import Action, MediaStore
from chat4all.service_layer.media import MIB

__all__ = ["TelegramChannel", "CHANNEL", "LIMITS"]

LIMITS: Final = Limits(
    # Bot API: sendMessage text 1-4096 characters, captions up to 1024, inline keyboards,
    # photos uploaded with sendPhoto up to 10 MB (other files: 50 MB, CHAT4ALL_MEDIA_MAX_BYTES),
    # stickers (sendSticker); sendChatAction for typing; no read receipts, so no mark-read.
    text=4096,
    caption=1024,
    attachments=10,
    buttons=100,
    max_bytes={"image": 10 * MIB},
    location=True,
    templates=False,
    kinds=BASE_ATTACHMENTS | {"sticker"},
    content=BASE_CONTENT | {ContentKind.REACTION},  # setMessageReaction
    actions=frozenset({Action.TYPING_ON, Action.TYPING_OFF}),
)


class TelegramChannel:
    name = NAME
    limits = LIMITS
    settings = TelegramSettings

    def simulated(self, settings: TelegramSettings, api_url: str) -> TelegramSettings:
        account = TelegramAccount(token=SecretStr(SIMULATOR_TOKEN))
        return settings.model_copy(
            update={"ACCOUNTS": {SIMULATOR_ACCOUNT: account}, "BOTS": {}, "API_URL": api_url}
        )

    def simulator(self, settings: TelegramSettings) -> TelegramSimulator:
        tokens = {a.token.get_secret_value() for a in settings.accounts().values()}
        return TelegramSimulator(
            tokens=tokens | {SIMULATOR_TOKEN}, secret=settings.WEBHOOK_SECRET.get_secret_value()
        )

    def connector(self, settings: TelegramSettings, media: MediaStore | None) -> TelegramConnector:
        return TelegramConnector(_tokens(settings), api_url=settings.API_URL, media=media)

    def receiver(self, settings: TelegramSettings) -> TelegramReceiver:
        return TelegramReceiver(settings.WEBHOOK_SECRET.get_secret_value())

    def pollers(self, settings: TelegramSettings, deliver: Deliver) -> Sequence[TelegramPoller]:
        if not settings.POLLING:
            return ()
        return [
            TelegramPoller(account, token, deliver, api_url=settings.API_URL)
            for account, token in _tokens(settings).items()
        ]


def _tokens(settings: TelegramSettings) -> dict[str, str]:
    return {name: a.token.get_secret_value() for name, a in settings.accounts().items()}


CHANNEL: Final[ChannelPlugin[TelegramSettings]] = TelegramChannel()
"""The entry point (``chat4all.channels``: ``telegram``)."""
