"""The canonical model: every channel's messages are normalised to these value objects.

A :class:`Message` belongs to one tenant and one :class:`Conversation` (a tenant's thread with
one recipient on one channel account). Its content is a :class:`Content` that covers text,
attachments by reference, location, reply-to, channel templates, interactive buttons, and
channel-specific extras in a typed extension field. Its delivery walks the
:class:`DeliveryStatus` lifecycle::

    accepted → queued → sent → delivered → read
                 └──────────┴──→ failed (with a reason)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "DeliveryStatus",
    "Attachment",
    "ATTACHMENT_KINDS",
    "Media",
    "Location",
    "Button",
    "Template",
    "Content",
    "Message",
    "StatusEvent",
    "Conversation",
    "status_document",
    "TERMINAL_STATUSES",
    "message_document",
]


class DeliveryStatus(StrEnum):
    ACCEPTED = "accepted"
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


TERMINAL_STATUSES: Final = frozenset({DeliveryStatus.READ, DeliveryStatus.FAILED})

_ORDER: Final = {
    DeliveryStatus.ACCEPTED: 0,
    DeliveryStatus.QUEUED: 1,
    DeliveryStatus.SENT: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.READ: 4,
}


def advances(current: DeliveryStatus, new: DeliveryStatus) -> bool:
    """Whether ``new`` moves a message forward: providers report late and out of order, and a
    ``delivered`` arriving after ``read`` must not move the status back."""
    if current in TERMINAL_STATUSES:
        return False
    if new is DeliveryStatus.FAILED:
        return True
    return _ORDER[new] > _ORDER[current]


ATTACHMENT_KINDS: Final = ("image", "video", "audio", "document")


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file by reference: exactly one of ``url`` (the provider fetches it) and ``media_id``
    (a :class:`Media` the tenant uploaded to us; we upload its bytes to the provider)."""

    url: str | None = None
    kind: str | None = "document"
    """``image``, ``video``, ``audio`` or ``document``; ``None`` on a request: ``document``
    for a URL, the upload's kind for a ``media_id`` (an accepted message always has one)."""
    filename: str | None = None
    mime_type: str | None = None
    caption: str | None = None
    media_id: str | None = None


@dataclass(frozen=True, slots=True)
class Media:
    """A file a tenant uploaded (``POST /v1/media``), stored by its content."""

    id: str
    tenant: str
    filename: str
    mime_type: str
    size: int
    """Bytes."""
    sha256: str
    """Hex digest of the bytes."""
    kind: str
    """``image``, ``video``, ``audio`` or ``document``."""
    created_at: float


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float
    longitude: float
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Button:
    """An interactive reply button (``payload`` comes back when it is pressed) or a link."""

    title: str
    payload: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    """A channel's pre-approved message template and its parameters."""

    name: str
    language: str
    parameters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Content:
    text: str | None = None
    attachments: tuple[Attachment, ...] = ()
    location: Location | None = None
    reply_to: str | None = None
    """Our id of the message this one answers."""
    template: Template | None = None
    buttons: tuple[Button, ...] = ()
    extensions: tuple[tuple[str, str], ...] = ()
    """Channel-specific extras as sorted ``(key, value)`` pairs, e.g. ``parse_mode``."""

    @property
    def empty(self) -> bool:
        return not (self.text or self.attachments or self.location or self.template)


@dataclass(frozen=True, slots=True)
class StatusEvent:
    status: DeliveryStatus
    at: float
    """Unix time."""
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    tenant: str
    channel: str
    """The channel's name (as its plugin is registered)."""
    account: str
    """Our account on the channel (a bot, a phone number, a page)."""
    recipient: str
    """The other side's id on the channel (a chat id, a phone number, a page-scoped user id ...)."""
    last_message_at: float | None = None


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    tenant: str
    conversation_id: str
    seq: int
    """Position in its conversation: delivery follows it."""
    direction: str
    """``outbound`` (we send) or ``inbound`` (we received)."""
    content: Content
    status: DeliveryStatus
    created_at: float
    provider_message_id: str | None = None
    history: tuple[StatusEvent, ...] = field(default=())


def content_document(content: Content) -> dict[str, Any]:
    """``dataclasses.asdict(content)``, field by field: asdict's generic recursion (a deepcopy
    of every leaf) was a visible share of each accept's CPU, and it runs up to three times per
    message (the idempotency hash, the stored row, the answer)."""
    location, template = content.location, content.template
    return {
        "text": content.text,
        "attachments": tuple(
            {
                "url": a.url,
                "kind": a.kind,
                "filename": a.filename,
                "mime_type": a.mime_type,
                "caption": a.caption,
                "media_id": a.media_id,
            }
            for a in content.attachments
        ),
        "location": (
            None
            if location is None
            else {
                "latitude": location.latitude,
                "longitude": location.longitude,
                "name": location.name,
            }
        ),
        "reply_to": content.reply_to,
        "template": (
            None
            if template is None
            else {
                "name": template.name,
                "language": template.language,
                "parameters": tuple(template.parameters),
            }
        ),
        "buttons": tuple(
            {"title": b.title, "payload": b.payload, "url": b.url} for b in content.buttons
        ),
        "extensions": tuple(tuple(pair) for pair in content.extensions),
    }


def message_document(message: Message) -> dict[str, Any]:
    """A message as clients see it: REST bodies, live events and webhook payloads."""
    content = content_document(message.content)
    content["extensions"] = dict(message.content.extensions)
    return {
        "id": message.id,
        "tenant": message.tenant,
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "direction": message.direction,
        "content": content,
        "status": message.status,
        "created_at": message.created_at,
        "provider_message_id": message.provider_message_id,
        "history": [{"status": e.status, "at": e.at, "detail": e.detail} for e in message.history],
    }


def status_document(message: Message, status: str, detail: str | None) -> dict[str, Any]:
    """A ``message.status`` event as clients see it (live events and webhook payloads)."""
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "status": status,
        "detail": detail,
    }
