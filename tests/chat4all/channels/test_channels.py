"""Every channel passes the contract kit: one line each."""

from __future__ import annotations

from chat4all.adapters.channels.instagram import CHANNEL as INSTAGRAM
from chat4all.adapters.channels.messenger import CHANNEL as MESSENGER
from chat4all.adapters.channels.telegram import CHANNEL as TELEGRAM
from chat4all.adapters.channels.whatsapp import CHANNEL as WHATSAPP
from tests.chat4all.channels import echo
from tests.chat4all.channels.kit import ChannelKit


class TestTelegram(ChannelKit):
    plugin = TELEGRAM


class TestWhatsApp(ChannelKit):
    plugin = WHATSAPP


class TestEcho(ChannelKit):
    plugin = echo.CHANNEL


class TestMessenger(ChannelKit):
    plugin = MESSENGER


class TestInstagram(ChannelKit):
    plugin = INSTAGRAM
