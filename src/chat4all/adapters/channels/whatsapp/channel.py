"""The WhatsApp Cloud API channel as a plugin: its limits, settings and parts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from pydantic import SecretStr

from chat4all.adapters.channels.graph import GraphClient
from chat4all.adapters.channels.whatsapp.connector import (
    MAX_BYTES,
    NAME,
    RULES,
    Number,
    WhatsAppConnector,
    WhatsAppOptions,
)
from chat4all.adapters.channels.whatsapp.settings import WhatsAppAccount, WhatsAppSettings
from chat4all.adapters.channels.whatsapp.simulator import (
    SIMULATOR_NUMBER,
    SIMULATOR_TOKEN,
    WhatsAppSimulator,
)
from chat4all.adapters.channels.whatsapp.webhook import WhatsAppReceiver
from chat4all.domain.model import ATTACHMENT_KINDS, ContentKind
from chat4all.plugin import SIMULATOR_ACCOUNT, ChannelPlugin, Deliver, Limits, Poller
from chat4all.ports import Action, MediaStore

__all__ = ["WhatsAppChannel", "CHANNEL", "LIMITS"]

LIMITS: Final = Limits(
    # Cloud API: text body up to 4096 characters, media captions up to 1024, reply buttons up
    # to 3 (titles up to 20), a list up to 10 rows (titles 24, descriptions 72), one attachment
    # a message (we send each as its own).
    text=4096,
    caption=1024,
    attachments=10,
    buttons=3,
    kinds=frozenset(ATTACHMENT_KINDS),
    max_bytes=MAX_BYTES,
    location=True,
    templates=True,
    content=frozenset(
        {
            ContentKind.TEXT,
            ContentKind.ATTACHMENTS,
            ContentKind.REPLY,
            ContentKind.BUTTONS,
            ContentKind.MENU,
            ContentKind.REACTION,
            ContentKind.CONTACTS,
        }
    ),
    titles=20,
    descriptions=72,
    menu_rows=10,
    menu_sections=10,
    contacts=10,
    options=WhatsAppOptions,
    actions=frozenset({Action.MARK_READ.value, Action.TYPING_ON.value}),
)


class WhatsAppChannel:
    name = NAME
    limits = LIMITS
    settings = WhatsAppSettings

    def simulated(self, settings: WhatsAppSettings, api_url: str) -> WhatsAppSettings:
        account = WhatsAppAccount(
            phone_number_id=SIMULATOR_NUMBER, access_token=SecretStr(SIMULATOR_TOKEN)
        )
        return settings.model_copy(
            update={"ACCOUNTS": {SIMULATOR_ACCOUNT: account}, "API_URL": api_url}
        )

    def simulator(self, settings: WhatsAppSettings) -> WhatsAppSimulator:
        numbers = {
            a.access_token.get_secret_value(): settings.phone_number_id(name)
            for name, a in settings.accounts().items()
        }
        return WhatsAppSimulator(
            numbers={SIMULATOR_TOKEN: SIMULATOR_NUMBER, **numbers},
            app_secret=settings.APP_SECRET.get_secret_value(),
        )

    def connector(self, settings: WhatsAppSettings, media: MediaStore | None) -> WhatsAppConnector:
        numbers = {
            name: Number(
                settings.phone_number_id(name), a.access_token.get_secret_value(), settings.RATE
            )
            for name, a in settings.accounts().items()
        }
        client = GraphClient(settings.API_URL, settings.API_VERSION, where="WhatsApp", rules=RULES)
        return WhatsAppConnector(
            numbers,
            client,
            media=media,
            pair_interval=settings.PAIR_INTERVAL,
            pace_seconds=settings.PACE_SECONDS,
            pause_retry=settings.PAUSE_RETRY,
        )

    def receiver(self, settings: WhatsAppSettings) -> WhatsAppReceiver:
        return WhatsAppReceiver(settings)

    def pollers(self, settings: WhatsAppSettings, deliver: Deliver) -> Sequence[Poller]:
        return ()


CHANNEL: Final[ChannelPlugin[WhatsAppSettings]] = WhatsAppChannel()
"""The entry point (``chat4all.channels``: ``whatsapp``)."""
