"""WhatsApp's inbound side: the Cloud API webhook (``object: whatsapp_business_account``),
signature-checked, normalised to the canonical model.

One POST may carry a batch: ``entry[]``, each with ``changes[]``, each ``value`` with
``messages[]`` and ``statuses[]``; all of it is read, or none (a malformed part refuses the
whole request, and Meta redelivers it). Messages are keyed by their ``wamid`` (Meta redelivers
for up to 7 days: the core stores one). Every kind maps to the
canonical model: text, media, location, contacts, reactions (``Reaction`` with the ``wamid``
reacted to), reply buttons and list rows pressed and template buttons (``Postback``), replies
(``reply_to_provider_id``: the ``context.id``), and types WhatsApp does not support kept as
``unsupported``; the sender's profile name is the extension ``from_name``.

Media arrive as ids: ``whatsapp-media:<id>`` (fetched with the Bearer token on request,
:meth:`~chat4all.adapters.channels.whatsapp.connector.WhatsAppConnector.download`).

Statuses become receipts (``sent``, ``delivered``, ``read``, ``failed`` with its errors read
by code as a send's, e.g. 131047's "send a template"); the core moves a status only forward.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chat4all.adapters.channels.graph import GraphError, check_signature, classify, handshake
from chat4all.adapters.channels.whatsapp.connector import MEDIA_PREFIX, RULES
from chat4all.adapters.channels.whatsapp.settings import WhatsAppSettings
from chat4all.domain.model import (
    Attachment,
    Contact,
    Content,
    DeliveryStatus,
    Location,
    Postback,
    PostbackSource,
    Reaction,
)
from chat4all.errors import InvalidRequest, NotFound
from chat4all.plugin import InboundMessage, Receipt, Received
from chat4all.ports import WebhookRequest

__all__ = ["WhatsAppReceiver", "parse", "MEDIA_PREFIX"]

log = logging.getLogger(__name__)

_MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
_RECEIPTS = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
}


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Media(_Loose):
    id: str
    mime_type: str | None = None
    caption: str | None = None
    filename: str | None = None


class _Context(_Loose):
    id: str | None = None


class _Message(_Loose):
    sender: str = Field(alias="from")
    id: str
    type: str
    text: dict[str, Any] | None = None
    context: _Context | None = None
    location: dict[str, Any] | None = None
    reaction: dict[str, Any] | None = None
    interactive: dict[str, Any] | None = None
    button: dict[str, Any] | None = None
    contacts: list[dict[str, Any]] | None = None
    image: _Media | None = None
    video: _Media | None = None
    audio: _Media | None = None
    document: _Media | None = None
    sticker: _Media | None = None


class _Status(_Loose):
    id: str
    status: str
    recipient_id: str | None = None
    biz_opaque_callback_data: str | None = None
    errors: list[dict[str, Any]] = []


class _Value(_Loose):
    metadata: dict[str, Any] = {}
    contacts: list[dict[str, Any]] = []
    messages: list[_Message] = []
    statuses: list[_Status] = []


class _Change(_Loose):
    field: str = "messages"
    value: _Value


class _Entry(_Loose):
    id: str | None = None
    changes: list[_Change] = []


class _Notification(_Loose):
    object: str
    entry: list[_Entry]


def parse(body: bytes, phone_number_id: str | None = None) -> Received:
    """A webhook body, whole; only the changes for ``phone_number_id`` (``None``: all)."""
    try:
        doc = json.loads(body)
        note = _Notification.model_validate(doc)
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidRequest(
                f"not a WhatsApp webhook notification: {where}: {first['msg']}", where
            ) from None
        raise InvalidRequest(
            "the body is not JSON (a WhatsApp webhook notification)", "body"
        ) from None
    if note.object != "whatsapp_business_account":
        raise InvalidRequest(
            f"object {note.object!r}: this webhook takes whatsapp_business_account", "object"
        )
    messages: list[InboundMessage] = []
    receipts: list[Receipt] = []
    for entry in note.entry:
        for change in entry.changes:
            value = change.value
            number = str(value.metadata.get("phone_number_id", ""))
            if phone_number_id is not None and number and number != phone_number_id:
                log.warning(
                    "WhatsApp change for phone number %s reached the webhook of %s: ignored "
                    "(set each number's webhook to its own account's URL)",
                    number,
                    phone_number_id,
                )
                continue
            names = {
                str(c.get("wa_id")): str((c.get("profile") or {}).get("name", ""))
                for c in value.contacts
            }
            for message in value.messages:
                content = _content(message, names.get(message.sender, ""))
                messages.append(InboundMessage(message.id, message.sender, message.id, content))
            for status in value.statuses:
                mapped = _RECEIPTS.get(status.status)
                if mapped is None:
                    log.info("WhatsApp status %r of %s ignored", status.status, status.id)
                    continue
                detail = _failure(status.errors) if mapped is DeliveryStatus.FAILED else None
                receipts.append(Receipt(status.id, mapped, detail))
    return Received(messages=tuple(messages), receipts=tuple(receipts))


def _failure(errors: list[dict[str, Any]]) -> str:
    """A failed status's reason: each error's rule (by code, as a send's error) and Meta's
    words."""
    if not errors:
        return "WhatsApp: failed (no reason given)"
    reasons = []
    for raw in errors:
        error = GraphError.from_object(raw)
        reasons.append(f"WhatsApp: {classify(error, RULES).reason}: {error.describe()}")
    return "; ".join(reasons)


def _content(message: _Message, name: str) -> Content:
    ext: dict[str, str] = {}
    text: str | None = None
    attachments: list[Attachment] = []
    location: Location | None = None
    reaction: Reaction | None = None
    postback: Postback | None = None
    contacts: tuple[Contact, ...] = ()
    unsupported: str | None = None
    if name:
        ext["from_name"] = name
    kind = message.type
    if kind == "text" and message.text is not None:
        text = str(message.text.get("body", ""))
    elif kind in _MEDIA_KINDS and (media := getattr(message, kind)) is not None:
        attachments.append(
            Attachment(
                MEDIA_PREFIX + media.id,
                kind,
                filename=media.filename,
                mime_type=media.mime_type,
                caption=media.caption,
            )
        )
    elif kind == "location" and message.location is not None:
        loc = message.location
        location = Location(float(loc["latitude"]), float(loc["longitude"]), loc.get("name"))
    elif kind == "reaction" and message.reaction is not None:
        reaction = Reaction(
            None,
            str(message.reaction.get("emoji", "")),
            str(message.reaction.get("message_id", "")) or None,
        )
    elif kind == "interactive" and message.interactive is not None:
        which = str(message.interactive.get("type"))
        reply = message.interactive.get(which) or {}
        source = PostbackSource.LIST if which == "list_reply" else PostbackSource.BUTTON
        postback = Postback(source, str(reply.get("id", "")), reply.get("title"))
    elif kind == "button" and message.button is not None:
        payload = str(message.button.get("payload", ""))
        postback = Postback(PostbackSource.BUTTON, payload, message.button.get("text"))
    elif kind == "contacts" and message.contacts is not None:
        contacts = tuple(_contact(c) for c in message.contacts)
    else:
        unsupported = kind
    context = message.context
    return Content(
        text=text,
        attachments=tuple(attachments),
        location=location,
        extensions=tuple(sorted(ext.items())),
        reaction=reaction,
        postback=postback,
        contacts=contacts,
        unsupported=unsupported,
        reply_to_provider_id=context.id if context is not None and context.id else None,
    )


def _contact(card: dict[str, Any]) -> Contact:
    name = card.get("name") or {}
    org = card.get("org") or {}
    return Contact(
        str(name.get("formatted_name") or name.get("first_name") or "?"),
        tuple(str(p.get("phone")) for p in card.get("phones") or () if p.get("phone")),
        tuple(str(e.get("email")) for e in card.get("emails") or () if e.get("email")),
        org.get("company"),
        tuple(str(u.get("url")) for u in card.get("urls") or () if u.get("url")),
    )


class WhatsAppReceiver:
    """The webhook of each account: the GET handshake with its verify token; POSTs signed with
    its app secret (X-Hub-Signature-256), else :class:`~chat4all.errors.AuthError` (401)."""

    def __init__(self, settings: WhatsAppSettings) -> None:
        self._settings = settings

    async def webhook(self, account: str, request: WebhookRequest) -> Received:
        settings = self._settings
        if request.method == "GET":
            return Received(reply=handshake(request.query, settings.verify_token(account)))
        if request.method != "POST":
            raise NotFound("WhatsApp calls the webhook with GET (handshake) or POST only")
        check_signature(settings.app_secret(account), request)
        number = settings.phone_number_id(account) if account in settings.ACCOUNTS else None
        return parse(request.body, number)
