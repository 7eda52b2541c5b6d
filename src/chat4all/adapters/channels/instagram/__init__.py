"""The Instagram channel (Instagram API with Instagram Login: ``POST graph.instagram.com/
{version}/{IG_ID}/messages`` with an Instagram user token), built from the Messenger package's
parts with Instagram's :data:`~chat4all.adapters.channels.messenger.platform.INSTAGRAM`
platform: text up to 1000 bytes of UTF-8, image/audio/video/PDF by URL, no buttons."""

from chat4all.adapters.channels.messenger.channel import INSTAGRAM_CHANNEL as CHANNEL
from chat4all.adapters.channels.messenger.settings import InstagramAccount, InstagramSettings

__all__ = ["CHANNEL", "InstagramAccount", "InstagramSettings"]
