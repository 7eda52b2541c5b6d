"""A canonical message as Send API requests: one ``POST /{version}/{ID}/messages`` body per
part, in order (Messenger and Instagram send one thing per request).

- text → ``message.text`` (with ``quick_replies`` on the message's last part);
- text with buttons (Messenger) → a button template (``template_type: button``);
- each attachment → ``message.attachment`` ``{type, payload: {url, is_reusable}}`` or, for an
  upload, ``payload.attachment_id`` (uploaded once through ``/message_attachments``); its
  caption (neither platform has captions) → a text message right after it;
- every body carries ``recipient.id``, ``messaging_type`` (``RESPONSE`` unless the message's
  extensions say ``UPDATE`` or ``MESSAGE_TAG`` with a ``tag``) and, on Messenger,
  ``message.metadata`` = our message id (echoed back with ``is_echo``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from chat4all.adapters.channels.messenger.platform import (
    MESSAGING_TYPES,
    QUICK_REPLIES,
    Platform,
)
from chat4all.domain.model import Attachment, Button, Content, Message
from chat4all.errors import InvalidRequest

__all__ = ["Part", "parts", "envelope", "check", "TEMPLATE_TEXT", "METADATA_PREFIX"]

TEMPLATE_TEXT: Final = 640
"""A button template's text (Messenger)."""

METADATA_PREFIX: Final = "chat4all:"
"""``message.metadata`` = this + our message id: an echo carrying it is a send of ours."""


@dataclass(frozen=True, slots=True)
class Part:
    body: dict[str, Any]
    """The request body (``attachment.payload`` without its file when ``upload`` is set)."""
    upload: Attachment | None = None
    """An attachment to upload first; its ``attachment_id`` then goes into ``body``."""


def envelope(platform: Platform, extensions: Mapping[str, str]) -> dict[str, str]:
    """``messaging_type`` (and ``tag``) from a message's extensions, checked:
    :class:`InvalidRequest` naming the field when they are not what the platform takes."""
    kind = extensions.get("messaging_type", "RESPONSE")
    if kind not in MESSAGING_TYPES:
        raise InvalidRequest(
            f"messaging_type {kind!r}: {platform.channel} takes {', '.join(MESSAGING_TYPES)}",
            "content.extensions.messaging_type",
        )
    tag = extensions.get("tag")
    if kind == "MESSAGE_TAG":
        if tag not in platform.tags:
            raise InvalidRequest(
                f"messaging_type MESSAGE_TAG needs a tag; {platform.channel} takes "
                f"{', '.join(platform.tags)} (HUMAN_AGENT: up to 7 days after the person's "
                "last message)",
                "content.extensions.tag",
            )
        return {"messaging_type": kind, "tag": tag}
    if tag is not None:
        raise InvalidRequest(
            f"a tag goes with messaging_type MESSAGE_TAG, not {kind}", "content.extensions.tag"
        )
    return {"messaging_type": kind}


def check(platform: Platform, content: Content) -> None:
    """What the platform cannot carry, refused before a message is accepted (the field and the
    platform's limit named): text measured as the platform counts it, buttons, quick replies,
    the message type and tag."""
    for where, text in _texts(content):
        if platform.measure(text) > platform.text:
            raise InvalidRequest(
                f"{where} is {platform.measure(text)} {platform.unit}; {platform.channel} "
                f"allows {platform.text}",
                where,
            )
    if content.buttons:
        if not platform.buttons:
            raise InvalidRequest(
                f"{platform.channel} has no buttons (use quick replies, up to {QUICK_REPLIES})",
                "content.buttons",
            )
        if len(content.buttons) > platform.buttons:
            raise InvalidRequest(
                f"{len(content.buttons)} buttons; {platform.channel} allows {platform.buttons}",
                "content.buttons",
            )
        if content.text and len(content.text) > TEMPLATE_TEXT:
            raise InvalidRequest(
                f"text with buttons is {len(content.text)} characters; {platform.channel}'s "
                f"button template allows {TEMPLATE_TEXT}",
                "content.text",
            )
    envelope(platform, dict(content.extensions))


def _texts(content: Content) -> list[tuple[str, str]]:
    texts = [("content.text", content.text)] if content.text else []
    texts += [
        (f"content.attachments[{n}].caption", a.caption)
        for n, a in enumerate(content.attachments)
        if a.caption
    ]
    return texts


def parts(platform: Platform, recipient: str, message: Message) -> list[Part]:
    """Every request for ``message`` to ``recipient``, in order."""
    content = message.content
    head: dict[str, Any] = {"recipient": {"id": recipient}}
    head.update(envelope(platform, dict(content.extensions)))
    reply_to = dict(content.extensions).get("reply_to_mid")

    def body(payload: dict[str, Any]) -> dict[str, Any]:
        if platform.metadata:
            payload = {**payload, "metadata": f"{METADATA_PREFIX}{message.id}"}
        doc = {**head, "message": payload}
        if reply_to:
            doc["reply_to"] = {"mid": reply_to}
        return doc

    out: list[Part] = []
    if content.buttons and platform.buttons:
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
    quick = _quick_replies(content)
    if quick and out:
        last = out[-1]
        last.body["message"]["quick_replies"] = quick
    return out


def _button(button: Button) -> dict[str, str]:
    if button.url:
        return {"type": "web_url", "url": button.url, "title": button.title}
    return {"type": "postback", "title": button.title, "payload": button.payload or button.title}


def _quick_replies(content: Content) -> list[dict[str, str]]:
    # The canonical quick replies arrive with the core's model; until then none.
    return []
