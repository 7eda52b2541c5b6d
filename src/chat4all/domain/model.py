"""The canonical model: every channel's messages are normalised to these value objects.

A :class:`Message` belongs to one tenant and one :class:`Conversation` (a tenant's thread with
one recipient on one channel account). Its content is a :class:`Content` that covers text,
attachments by reference (stickers among them), location, contacts, reply-to, a reaction (or
its removal), channel templates, interactive reply buttons, lists (:class:`Menu`) and quick
replies, and channel-specific extras: the free ``extensions`` pairs and the typed ``options`` a
channel's plugin declares and validates. What only arrives inbound is here too: a pressed
button, a chosen list row, a postback or a quick reply (:class:`Postback`), and a message of a
type we do not model, kept with the provider's type (``unsupported``). A channel declares which
of these kinds it sends (:class:`~chat4all.plugin.Limits`); a kind it does not is refused when
the message is accepted. Its delivery walks the :class:`DeliveryStatus` lifecycle::

    accepted → queued → sent → delivered → read
                 └──────────┴──→ failed (with a reason)

Status only moves forward (:func:`transition`): a late or repeated receipt changes nothing, and
a ``failed`` after ``delivered`` (another device of the recipient failed) is recorded in the
history without moving the status back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal

__all__ = [
    "DeliveryStatus",
    "Attachment",
    "ATTACHMENT_KINDS",
    "UPLOAD_KINDS",
    "Oversize",
    "Media",
    "Location",
    "Button",
    "Template",
    "Reaction",
    "MenuRow",
    "MenuSection",
    "Menu",
    "QuickReply",
    "Contact",
    "Postback",
    "PostbackSource",
    "ContentKind",
    "Content",
    "Message",
    "StatusEvent",
    "Conversation",
    "status_document",
    "TERMINAL_STATUSES",
    "message_document",
    "content_document",
    "content_from",
    "advances",
    "transition",
    "Transition",
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
        # a failure reported after delivery (another of the recipient's devices) does not
        # undo it: see :func:`transition`
        return current is not DeliveryStatus.DELIVERED
    return _ORDER[new] > _ORDER[current]


Transition = Literal["advance", "record", "stale"]
"""What a reported status does to a message: ``advance`` (the status moves, the event is
recorded), ``record`` (the event is recorded in the history, the status stays: a ``failed``
after ``delivered`` or ``read``) or ``stale`` (nothing: a repeat, or late and out of order)."""


def transition(current: DeliveryStatus, new: DeliveryStatus) -> Transition:
    """:func:`advances`, and what to do when it does not: a ``failed`` after the message was
    ``delivered`` or ``read`` (one of the recipient's devices failed) is kept in the history."""
    if advances(current, new):
        return "advance"
    if new is DeliveryStatus.FAILED and current in (DeliveryStatus.DELIVERED, DeliveryStatus.READ):
        return "record"
    return "stale"


UPLOAD_KINDS: Final = ("image", "video", "audio", "document")
"""What an upload is (a sticker is uploaded as an image and sent with kind ``sticker``)."""

ATTACHMENT_KINDS: Final = (*UPLOAD_KINDS, "sticker")
"""What an attachment is; a channel declares those it sends."""


class Oversize(StrEnum):
    """What becomes of an upload larger than the channel takes for its kind (a tenant's
    setting, overridable per send)."""

    REJECT = "reject"
    """The send is refused (422) with the size, the channel's limit and what to do."""
    LINK = "link"
    """The attachment goes as text: its caption and a signed, expiring link to the file."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file by reference: exactly one of ``url`` (the provider fetches it) and ``media_id``
    (a :class:`Media` the tenant uploaded to us; we upload its bytes to the provider)."""

    url: str | None = None
    kind: str | None = "document"
    """One of :data:`ATTACHMENT_KINDS`; ``None`` on a request: ``document`` for a URL, the
    upload's kind for a ``media_id`` (an accepted message always has one)."""
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
    """One of :data:`UPLOAD_KINDS`."""
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
class Reaction:
    """An emoji on a message of the conversation; an empty ``emoji`` removes ours."""

    message_id: str | None
    """Our id of the message reacted to (inbound: ``None`` when it is not one we know)."""
    emoji: str = ""
    provider_message_id: str | None = None
    """The provider's id of that message: the core fills it in for the connector (outbound);
    the plugin gives it (inbound) and the core finds ``message_id`` from it."""


@dataclass(frozen=True, slots=True)
class MenuRow:
    """One choice of a :class:`Menu`; its ``id`` comes back (a :class:`Postback`) when chosen."""

    id: str
    title: str
    description: str | None = None


@dataclass(frozen=True, slots=True)
class MenuSection:
    title: str | None
    rows: tuple[MenuRow, ...]


@dataclass(frozen=True, slots=True)
class Menu:
    """An interactive list: a button (``button``, its label) that opens sections of rows."""

    button: str
    sections: tuple[MenuSection, ...]

    @property
    def rows(self) -> int:
        return sum(len(s.rows) for s in self.sections)


@dataclass(frozen=True, slots=True)
class QuickReply:
    """A suggested answer shown under a message; its ``payload`` comes back when tapped."""

    title: str
    payload: str | None = None
    """Default: the title."""


@dataclass(frozen=True, slots=True)
class Contact:
    """A contact card."""

    name: str
    """The name as shown."""
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    organization: str | None = None
    urls: tuple[str, ...] = ()


class PostbackSource(StrEnum):
    BUTTON = "button"
    """A reply button (or an inline keyboard's callback button) pressed."""
    LIST = "list"
    """A :class:`Menu` row chosen."""
    POSTBACK = "postback"
    """A persistent menu or template button (a "postback" event)."""
    QUICK_REPLY = "quick_reply"


@dataclass(frozen=True, slots=True)
class Postback:
    """Inbound: what someone pressed or chose (the payload or row id we sent with it)."""

    source: str
    """A :class:`PostbackSource` value."""
    payload: str
    title: str | None = None
    """The pressed button's or chosen row's title, when the provider tells it."""


class ContentKind(StrEnum):
    """The kinds of content a channel may send, as a channel's limits declare them (and as the
    422 for one it does not send names them)."""

    TEXT = "text"
    ATTACHMENTS = "attachments"
    LOCATION = "location"
    CONTACTS = "contacts"
    REPLY = "reply"
    REACTION = "reaction"
    TEMPLATE = "template"
    BUTTONS = "buttons"
    MENU = "menu"
    QUICK_REPLIES = "quick_replies"


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
    reaction: Reaction | None = None
    menu: Menu | None = None
    quick_replies: tuple[QuickReply, ...] = ()
    contacts: tuple[Contact, ...] = ()
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Typed channel-specific extras, under the channel's name (``{"<channel>": {...}}``):
    the channel's plugin declares their model (``Limits.options``) and validates them on
    accept; stored as the plugin's model dumped to JSON."""
    reply_to_provider_id: str | None = None
    """The provider's id of the message ``reply_to`` names: filled in by the core for the
    connector (outbound); given by the plugin (inbound), the core finds ``reply_to`` from it."""
    postback: Postback | None = None
    """Inbound only: a button pressed, a row chosen, a quick reply tapped."""
    unsupported: str | None = None
    """Inbound only: a message of a type we do not model, kept as the provider's type name."""

    @property
    def empty(self) -> bool:
        return not (
            self.text
            or self.attachments
            or self.location
            or self.template
            or self.reaction
            or self.contacts
            or self.postback
            or self.unsupported
        )

    def kinds(self) -> tuple[ContentKind, ...]:
        """The kinds of content this holds (what a channel must declare to send it)."""
        found = (
            (ContentKind.TEXT, self.text is not None),
            (ContentKind.ATTACHMENTS, bool(self.attachments)),
            (ContentKind.LOCATION, self.location is not None),
            (ContentKind.CONTACTS, bool(self.contacts)),
            (ContentKind.REPLY, self.reply_to is not None),
            (ContentKind.REACTION, self.reaction is not None),
            (ContentKind.TEMPLATE, self.template is not None),
            (ContentKind.BUTTONS, bool(self.buttons)),
            (ContentKind.MENU, self.menu is not None),
            (ContentKind.QUICK_REPLIES, bool(self.quick_replies)),
        )
        return tuple(kind for kind, present in found if present)


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
    message (the idempotency hash, the stored row, the answer).

    The kinds added after the first release are written only when present, so a content
    without them has the document it always had (stored rows, Idempotency-Key hashes)."""
    location, template = content.location, content.template
    doc: dict[str, Any] = {
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
    if content.reaction is not None:
        r = content.reaction
        doc["reaction"] = {
            "message_id": r.message_id,
            "emoji": r.emoji,
            "provider_message_id": r.provider_message_id,
        }
    if content.menu is not None:
        doc["menu"] = {
            "button": content.menu.button,
            "sections": tuple(
                {
                    "title": s.title,
                    "rows": tuple(
                        {"id": r.id, "title": r.title, "description": r.description} for r in s.rows
                    ),
                }
                for s in content.menu.sections
            ),
        }
    if content.quick_replies:
        doc["quick_replies"] = tuple(
            {"title": q.title, "payload": q.payload} for q in content.quick_replies
        )
    if content.contacts:
        doc["contacts"] = tuple(
            {
                "name": c.name,
                "phones": tuple(c.phones),
                "emails": tuple(c.emails),
                "organization": c.organization,
                "urls": tuple(c.urls),
            }
            for c in content.contacts
        )
    if content.options:
        doc["options"] = {name: dict(value) for name, value in content.options.items()}
    if content.reply_to_provider_id is not None:
        doc["reply_to_provider_id"] = content.reply_to_provider_id
    if content.postback is not None:
        p = content.postback
        doc["postback"] = {"source": p.source, "payload": p.payload, "title": p.title}
    if content.unsupported is not None:
        doc["unsupported"] = content.unsupported
    return doc


def content_from(doc: Mapping[str, Any]) -> Content:
    """The inverse of :func:`content_document` (a stored row made by any release)."""
    template, reaction, menu, postback = (
        doc.get("template"),
        doc.get("reaction"),
        doc.get("menu"),
        doc.get("postback"),
    )
    return Content(
        text=doc.get("text"),
        attachments=tuple(Attachment(**a) for a in doc.get("attachments", ())),
        location=Location(**doc["location"]) if doc.get("location") else None,
        reply_to=doc.get("reply_to"),
        template=(
            Template(template["name"], template["language"], tuple(template["parameters"]))
            if template
            else None
        ),
        buttons=tuple(Button(**b) for b in doc.get("buttons", ())),
        extensions=tuple((k, v) for k, v in doc.get("extensions", ())),
        reaction=Reaction(**reaction) if reaction else None,
        menu=(
            Menu(
                menu["button"],
                tuple(
                    MenuSection(s["title"], tuple(MenuRow(**r) for r in s["rows"]))
                    for s in menu["sections"]
                ),
            )
            if menu
            else None
        ),
        quick_replies=tuple(QuickReply(**q) for q in doc.get("quick_replies", ())),
        contacts=tuple(
            Contact(
                c["name"],
                tuple(c.get("phones", ())),
                tuple(c.get("emails", ())),
                c.get("organization"),
                tuple(c.get("urls", ())),
            )
            for c in doc.get("contacts", ())
        ),
        options={name: dict(value) for name, value in (doc.get("options") or {}).items()},
        reply_to_provider_id=doc.get("reply_to_provider_id"),
        postback=Postback(**postback) if postback else None,
        unsupported=doc.get("unsupported"),
    )


_CLIENT_DEFAULTS: Final[dict[str, Any]] = {
    "reaction": None,
    "menu": None,
    "quick_replies": (),
    "contacts": (),
    "options": {},
    "postback": None,
    "unsupported": None,
}


def message_document(message: Message) -> dict[str, Any]:
    """A message as clients see it: REST bodies, live events and webhook payloads."""
    content = _CLIENT_DEFAULTS | content_document(message.content)
    content["extensions"] = dict(message.content.extensions)
    content.pop("reply_to_provider_id", None)
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
