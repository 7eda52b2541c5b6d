"""The Messenger channel (Send API, ``POST /{version}/{PAGE_ID}/messages`` with a Page token)
and the parts the Instagram channel shares with it: the request mapping, the connector, the
webhook receiver and the simulator (each given a
:class:`~chat4all.adapters.channels.messenger.platform.Platform`)."""

from chat4all.adapters.channels.messenger.channel import MESSENGER_CHANNEL as CHANNEL
from chat4all.adapters.channels.messenger.channel import SIMULATOR_IDS, SendApiChannel
from chat4all.adapters.channels.messenger.connector import Credentials, SendApiConnector
from chat4all.adapters.channels.messenger.platform import INSTAGRAM, MESSENGER, Platform
from chat4all.adapters.channels.messenger.settings import MessengerAccount, MessengerSettings
from chat4all.adapters.channels.messenger.simulator import SendApiSimulator
from chat4all.adapters.channels.messenger.webhook import SendApiReceiver, parse

__all__ = [
    "CHANNEL",
    "INSTAGRAM",
    "MESSENGER",
    "SIMULATOR_IDS",
    "Credentials",
    "MessengerAccount",
    "MessengerSettings",
    "Platform",
    "SendApiChannel",
    "SendApiConnector",
    "SendApiReceiver",
    "SendApiSimulator",
    "parse",
]
