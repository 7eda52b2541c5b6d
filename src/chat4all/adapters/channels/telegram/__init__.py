"""The Telegram channel (Bot API): connector, webhook receiver, getUpdates poller, simulator."""

from chat4all.adapters.channels.telegram.channel import CHANNEL, LIMITS, TelegramChannel
from chat4all.adapters.channels.telegram.connector import DEFAULT_API, TelegramConnector
from chat4all.adapters.channels.telegram.poller import TelegramPoller
from chat4all.adapters.channels.telegram.settings import TelegramAccount, TelegramSettings
from chat4all.adapters.channels.telegram.simulator import SIMULATOR_TOKEN, TelegramSimulator
from chat4all.adapters.channels.telegram.updates import (
    InboundUpdate,
    TelegramReceiver,
    parse_update,
)

__all__ = [
    "CHANNEL",
    "LIMITS",
    "DEFAULT_API",
    "SIMULATOR_TOKEN",
    "InboundUpdate",
    "TelegramAccount",
    "TelegramChannel",
    "TelegramConnector",
    "TelegramPoller",
    "TelegramReceiver",
    "TelegramSettings",
    "TelegramSimulator",
    "parse_update",
]
