"""A canonical message as Send API requests: one ``POST /{version}/{ID}/messages`` body per
part, in order (Messenger and Instagram send one thing per request).

- text → ``message.text`` (with ``quick_replies`` on the message's last part);
- text with buttons (Messenger) → a button template (``template_type: button``);
- each attachment → ``message.attachment`` ``{type, payload: {url, is_reusable}}`` or, for an
  upload, ``payload.attachment_id`` (uploaded once through ``/message_attachments``); its
  caption (neither platform has captions) → a text message right after it;
- quick replies → ``message.quick_replies`` (``content_type: text``) on the last part;
- a reply → ``reply_to.mid`` (the provider id of the message answered);
- a reaction → ``sender_action: react`` (``unreact`` to remove it) with
  ``payload: {message_id, reaction}``;
- every body carries ``recipient.id``, ``messaging_type`` (``RESPONSE`` unless the message's
  options say ``UPDATE`` or ``MESSAGE_TAG`` with a ``tag``) and, on Messenger,
  ``message.metadata`` = our message id (echoed back with ``is_echo``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from chat4all.adapters.channels.messenger.platform import Platform
from chat4all.domain.model import Attachment, Button, Content, Message
from chat4all.errors import InvalidRequest

__all__ = [
    "Part",
    "parts",
    "envelope",
    "SendApiOptions",
    "MessengerOptions",
    "InstagramOptions",
    "OPTIONS",
    "TEMPLATE_TEXT",
    "METADATA_PREFIX",
    "LOVE",
]

TEMPLATE_TEXT: Final = 640
"""A button template's text (Messenger)."""

METADATA_PREFIX: Final = "chat4all:"
"""``message.metadata`` = this + our message id: an echo carrying it is a send of ours."""

LOVE: Final = frozenset({"\u2764", "\u2764\ufe0f", "love"})
"""The heart, sent as the Send API's ``love`` reaction."""


@dataclass(frozen=True, slots=True)
class Part:
    body: dict[str, Any]
    """The request body (``attachment.payload`` without its file when ``upload`` is set)."""
    upload: Attachment | None = None
    """An attachment to upload first; its ``attachment_id`` then goes into ``body``."""


class SendApiOptions(BaseModel):
    """``content.options.<channel>`` for Messenger and Instagram: when the message may go."""

    model_config = ConfigDict(extra="forbid")
    messaging_type: Literal["RESPONSE", "UPDATE", "MESSAGE_TAG"] = "RESPONSE"
    """``RESPONSE`` (an answer) or ``UPDATE`` inside the 24 h window; ``MESSAGE_TAG`` with
    ``tag`` outside it."""
    tag: str | None = None

    @model_validator(mode="after")
    def _tag_with_message_tag(self) -> SendApiOptions:
        if (self.messaging_type == "MESSAGE_TAG") != (self.tag is not None):
            raise ValueError("tag goes with messaging_type MESSAGE_TAG, and MESSAGE_TAG needs one")
        return self


class MessengerOptions(SendApiOptions):
    tag: (
        Literal["HUMAN_AGENT", "ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE"]
        | None
    ) = None
    """With ``MESSAGE_TAG``: ``HUMAN_AGENT`` (a person answers, up to 7 days after the user's
    last message), or one of the update tags."""


class InstagramOptions(SendApiOptions):
    tag: Literal["HUMAN_AGENT"] | None = None
    """With ``MESSAGE_TAG``: ``HUMAN_AGENT`` (up to 7 days after the user's last message)."""


OPTIONS: Final[Mapping[str, type[SendApiOptions]]] = {
    "messenger": MessengerOptions,
    "instagram": InstagramOptions,
}


def envelope(platform: Platform, content: Content) -> dict[str, str]:
    """``messaging_type`` (and ``tag``) from the message's options (validated when it was
    accepted; :class:`InvalidRequest` naming the field if not)."""
    raw = dict(content.options.get(platform.channel) or {})
    try:
        options = OPTIONS[platform.channel].model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        field = f"content.options.{platform.channel}" + (f".{where}" if where else "")
        raise InvalidRequest(f"{field}: {first['msg']}", field) from None
    head: dict[str, str] = {"messaging_type": options.messaging_type}
    if options.tag is not None:
        head["tag"] = options.tag
    return head


def parts(platform: Platform, recipient: str, message: Message) -> list[Part]:
    """Every request for ``message`` to ``recipient``, in order."""
    content = message.content
    if content.reaction is not None:
        return [_reaction(recipient, content)]
    head: dict[str, Any] = {"recipient": {"id": recipient}}
    head.update(envelope(platform, content))
    reply_to = content.reply_to_provider_id

    def body(payload: dict[str, Any]) -> dict[str, Any]:
        if platform.metadata:
            payload = {**payload, "metadata": f"{METADATA_PREFIX}{message.id}"}
        doc = {**head, "message": payload}
        if reply_to:
            doc["reply_to"] = {"mid": reply_to}
        return doc

    out: list[Part] = []
    if content.buttons and platform.buttons:
        if content.text and len(content.text) > TEMPLATE_TEXT:
            raise InvalidRequest(
                f"text with buttons is {len(content.text)} characters; {platform.title}'s "
                f"button template allows {TEMPLATE_TEXT}",
                "content.text",
            )
        template = {
            "template_type": "button",
            "text": content.text or "",
            "buttons": [_button(b) for b in content.buttons],
        }
        out.append(Part(body({"attachment": {"type": "template", "payload": template}})))
    elif content.text:
        out.append(Part(body({"text": content.text})))
    for n, attachment in enumerate(content.attachments):
        kind = platform.types.get(attachment.kind or "document", "file")
        if attachment.media_id is not None:
            if not platform.uploads:
                raise InvalidRequest(
                    f"{platform.title} takes files by URL only (the Instagram API with "
                    "Instagram Login has no upload endpoint): send a url",
                    f"content.attachments[{n}].media_id",
                )
            out.append(Part(body({"attachment": {"type": kind, "payload": {}}}), attachment))
        else:
            payload = {"url": attachment.url, "is_reusable": True}
            out.append(Part(body({"attachment": {"type": kind, "payload": payload}})))
        if attachment.caption:
            out.append(Part(body({"text": attachment.caption})))
    if content.quick_replies and out:
        out[-1].body["message"]["quick_replies"] = [
            {"content_type": "text", "title": q.title, "payload": q.payload or q.title}
            for q in content.quick_replies
        ]
    return out


def _reaction(recipient: str, content: Content) -> Part:
    reaction = content.reaction
    assert reaction is not None
    if not reaction.provider_message_id:
        raise InvalidRequest(
            "the message reacted to has no provider id (it was never delivered)",
            "content.reaction.message_id",
        )
    payload: dict[str, str] = {"message_id": reaction.provider_message_id}
    if reaction.emoji:
        payload["reaction"] = "love" if reaction.emoji in LOVE else reaction.emoji
    return Part(
        {
            "recipient": {"id": recipient},
            "sender_action": "react" if reaction.emoji else "unreact",
            "payload": payload,
        }
    )


def _button(button: Button) -> dict[str, str]:
    if button.url:
        return {"type": "web_url", "url": button.url, "title": button.title}
    return {"type": "postback", "title": button.title, "payload": button.payload or button.title}
