"""What Messenger's Send API and Instagram's messaging API (Instagram API with Instagram Login)
share, and where they differ: one :class:`Platform` value each.

Both take ``POST /{version}/{ID}/messages`` (a Page id on graph.facebook.com, an Instagram
professional account id on graph.instagram.com) with ``recipient.id`` (a page- or
Instagram-scoped user id), ``message`` or ``sender_action``, ``messaging_type`` and ``tag``;
both deliver webhooks as ``{"object", "entry": [{"id", "time", "messaging": [...]}]}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "Platform",
    "MESSENGER",
    "INSTAGRAM",
    "MESSAGING_TYPES",
    "QUICK_REPLIES",
]

MESSAGING_TYPES: Final = ("RESPONSE", "UPDATE", "MESSAGE_TAG")
"""``RESPONSE`` and ``UPDATE`` inside the 24 h window; ``MESSAGE_TAG`` (with ``tag``) outside."""

QUICK_REPLIES: Final = 13
"""Quick replies per message (both platforms)."""

MIB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Platform:
    channel: str
    """Our channel's name."""
    title: str
    """For messages: ``Messenger``, ``Instagram``."""
    webhook_object: str
    """The ``object`` of its webhook deliveries (``page``, ``instagram``)."""
    api_url: str
    """Its Graph host."""
    account_field: str
    """What our account's provider id is called in settings (``page_id``, ``ig_id``)."""
    text: int
    """The longest text: characters (Messenger) or UTF-8 bytes (Instagram)."""
    text_in_bytes: bool
    types: Mapping[str, str]
    """Our attachment kinds → its attachment ``type``."""
    max_bytes: Mapping[str, int]
    """The largest file by our kind."""
    buttons: int
    """Buttons of a button template (0: none)."""
    tags: tuple[str, ...]
    """The message tags it takes with ``MESSAGE_TAG``."""
    uploads: bool
    """Whether it takes reusable uploads (``/message_attachments``, then ``attachment_id``)."""
    metadata: bool
    """Whether ``message.metadata`` (our id, echoed back) is sent."""

    def measure(self, text: str) -> int:
        """``text``'s length as the platform counts it."""
        return len(text.encode()) if self.text_in_bytes else len(text)

    @property
    def unit(self) -> str:
        return "bytes of UTF-8" if self.text_in_bytes else "characters"


MESSENGER: Final = Platform(
    channel="messenger",
    title="Messenger",
    webhook_object="page",
    api_url="https://graph.facebook.com",
    account_field="page_id",
    # Send API: text up to 2000 characters; attachments (image, audio, video, file) up to 25 MB;
    # a button template with up to 3 buttons.
    text=2000,
    text_in_bytes=False,
    types={"image": "image", "audio": "audio", "video": "video", "document": "file"},
    max_bytes={"image": 25 * MIB, "audio": 25 * MIB, "video": 25 * MIB, "document": 25 * MIB},
    buttons=3,
    tags=("HUMAN_AGENT", "ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE"),
    uploads=True,
    metadata=True,
)

INSTAGRAM: Final = Platform(
    channel="instagram",
    title="Instagram",
    webhook_object="instagram",
    api_url="https://graph.instagram.com",
    account_field="ig_id",
    # Instagram messaging: text up to 1000 bytes of UTF-8; image (png, jpeg) 8 MB, audio (aac,
    # m4a, wav, mp4) and video (mp4, ogg, avi, mov, webm) 25 MB, file (PDF) 25 MB; by URL.
    text=1000,
    text_in_bytes=True,
    types={"image": "image", "audio": "audio", "video": "video", "document": "file"},
    max_bytes={"image": 8 * MIB, "audio": 25 * MIB, "video": 25 * MIB, "document": 25 * MIB},
    buttons=0,
    tags=("HUMAN_AGENT",),
    uploads=False,
    metadata=False,
)
