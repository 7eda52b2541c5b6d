"""The WhatsApp Cloud API channel: connector, webhook receiver, simulator."""

from chat4all.adapters.channels.whatsapp.channel import CHANNEL, LIMITS, WhatsAppChannel
from chat4all.adapters.channels.whatsapp.connector import (
    MAX_BYTES,
    RULES,
    WhatsAppConnector,
    payloads,
)
from chat4all.adapters.channels.whatsapp.settings import WhatsAppAccount, WhatsAppSettings
from chat4all.adapters.channels.whatsapp.simulator import (
    SIMULATOR_NUMBER,
    SIMULATOR_TOKEN,
    WhatsAppSimulator,
)
from chat4all.adapters.channels.whatsapp.webhook import MEDIA_PREFIX, WhatsAppReceiver, parse

__all__ = [
    "CHANNEL",
    "LIMITS",
    "MAX_BYTES",
    "MEDIA_PREFIX",
    "RULES",
    "SIMULATOR_NUMBER",
    "SIMULATOR_TOKEN",
    "WhatsAppAccount",
    "WhatsAppChannel",
    "WhatsAppConnector",
    "WhatsAppReceiver",
    "WhatsAppSettings",
    "WhatsAppSimulator",
    "parse",
    "payloads",
]
