"""The Telegram side of a running hub, for the tests that drive it."""

from __future__ import annotations

from chat4all.adapters.channels.telegram import TelegramSettings, TelegramSimulator
from chat4all.bootstrap import Hub


def telegram_of(hub: Hub) -> TelegramSimulator:
    """The hub's Telegram simulator (the embedded default runs one)."""
    simulator = hub.channels.simulators["telegram"]
    assert isinstance(simulator, TelegramSimulator)
    return simulator


def webhook_secret(hub: Hub) -> str:
    """What Telegram must send in X-Telegram-Bot-Api-Secret-Token to this hub."""
    settings = hub.channels.settings["telegram"]
    assert isinstance(settings, TelegramSettings)
    return settings.WEBHOOK_SECRET.get_secret_value()
