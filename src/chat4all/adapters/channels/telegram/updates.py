"""Telegram's inbound side: Bot API ``Update`` objects, from the webhook or from getUpdates,
normalised to the canonical model; the webhook's secret token checked."""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chat4all.domain.model import (
    Attachment,
    Contact,
    Content,
    Location,
    Postback,
    PostbackSource,
    Reaction,
)
from chat4all.errors import AuthError, InvalidRequest, NotFound
from chat4all.plugin import InboundMessage, Received
from chat4all.ports import WebhookRequest

__all__ = ["InboundUpdate", "parse_update", "received", "TelegramReceiver", "SECRET_HEADER"]

SECRET_HEADER = "x-telegram-bot-api-secret-token"


@dataclass(frozen=True, slots=True)
class InboundUpdate:
    update_id: str
    chat_id: str
    message_id: str
    content: Content


class _Strict(BaseModel):
    """Bot API types as Telegram sends them (no coercion of strings to numbers)."""

    model_config = ConfigDict(strict=True)


class _File(_Strict):
    file_id: str
    file_name: str | None = None
    mime_type: str | None = None


class _Chat(_Strict):
    id: int


class _User(_Strict):
    id: int | None = None


class _Replied(_Strict):
    message_id: int


class _Location(_Strict):
    latitude: float
    longitude: float


class _Contact(_Strict):
    phone_number: str
    first_name: str
    last_name: str | None = None


class _Sticker(_Strict):
    file_id: str
    emoji: str | None = None


_UNMODELLED = (
    "animation",
    "dice",
    "game",
    "poll",
    "venue",
    "video_note",
    "story",
    "invoice",
)
"""Message types we keep as ``unsupported`` (by their Bot API field name)."""


class _Message(_Strict):
    """The fields of a Bot API ``Message`` we read (the others are ignored)."""

    model_config = ConfigDict(strict=True, populate_by_name=True)

    message_id: int
    chat: _Chat
    sender: _User | None = Field(default=None, alias="from")
    text: str | None = None
    caption: str | None = None
    photo: list[_File] = []
    document: _File | None = None
    video: _File | None = None
    audio: _File | None = None
    voice: _File | None = None
    location: _Location | None = None
    reply_to_message: _Replied | None = None
    sticker: _Sticker | None = None
    contact: _Contact | None = None


class _CallbackQuery(_Strict):
    """An inline keyboard button pressed (its ``callback_data`` is our button's payload)."""

    id: str
    message: _Replied | None = None
    data: str | None = None
    chat_instance: str | None = None


class _CallbackMessage(_Strict):
    message_id: int
    chat: _Chat


class _ReactionType(_Strict):
    type: str
    emoji: str | None = None


class _MessageReaction(_Strict):
    chat: _Chat
    message_id: int
    new_reaction: list[_ReactionType] = []


class _Update(_Strict):
    update_id: int
    message: _Message | None = None
    message_reaction: _MessageReaction | None = None


def parse_update(update: dict[str, Any]) -> InboundUpdate | None:
    """A Bot API ``Update`` normalised to the canonical content: messages (with stickers,
    contacts, replies; message types we do not model as ``unsupported``), reactions and
    inline button presses (postbacks); ``None`` for update kinds we do not handle (edits,
    members ...). Files become references
    ``telegram-file:<file_id>`` (fetch them with getFile). A malformed update (not as the Bot
    API sends them) is an :class:`InvalidRequest`."""
    try:
        parsed = _Update.model_validate(update)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"not a Bot API Update: {where}: {first['msg']}", where) from None
    raw_message = update.get("message")
    if parsed.message_reaction is not None:
        return _reaction(str(parsed.update_id), parsed.message_reaction)
    callback = update.get("callback_query")
    if isinstance(callback, dict):
        return _pressed(str(parsed.update_id), callback)
    message = parsed.message
    if message is None:
        return None
    attachments: list[Attachment] = []
    caption = message.caption
    if message.photo:
        largest = message.photo[-1]
        attachments.append(Attachment(f"telegram-file:{largest.file_id}", "image", caption=caption))
    for item, kind in (
        (message.document, "document"),
        (message.video, "video"),
        (message.audio, "audio"),
        (message.voice, "audio"),
    ):
        if item is not None:
            attachments.append(
                Attachment(
                    f"telegram-file:{item.file_id}",
                    kind,
                    filename=item.file_name,
                    mime_type=item.mime_type,
                    caption=caption,
                )
            )
    if message.sticker is not None:
        attachments.append(
            Attachment(f"telegram-file:{message.sticker.file_id}", "sticker", caption=caption)
        )
    location = message.location
    extensions: list[tuple[str, str]] = []
    replied = None
    if message.reply_to_message is not None:
        replied = str(message.reply_to_message.message_id)
        extensions.append(("reply_to_provider_id", replied))
    if message.sender is not None and message.sender.id is not None:
        extensions.append(("from_id", str(message.sender.id)))
    contact = message.contact
    content = Content(
        text=message.text,
        attachments=tuple(attachments),
        location=Location(location.latitude, location.longitude) if location else None,
        extensions=tuple(sorted(extensions)),
        reply_to_provider_id=replied,
        contacts=(
            (
                Contact(
                    " ".join(p for p in (contact.first_name, contact.last_name) if p),
                    (contact.phone_number,),
                ),
            )
            if contact is not None
            else ()
        ),
    )
    if content.empty and isinstance(raw_message, dict):
        unmodelled = next((k for k in _UNMODELLED if k in raw_message), None)
        if unmodelled is not None:
            content = replace(content, unsupported=unmodelled)
    if content.empty:
        return None
    return InboundUpdate(
        str(parsed.update_id), str(message.chat.id), str(message.message_id), content
    )


def _reaction(update_id: str, reaction: _MessageReaction) -> InboundUpdate:
    """A user's reaction changed (``message_reaction``, with allowed_updates asking for it):
    the new emoji, or none (removed)."""
    emoji = next((r.emoji for r in reaction.new_reaction if r.type == "emoji" and r.emoji), "")
    target = str(reaction.message_id)
    content = Content(reaction=Reaction(None, emoji, target))
    return InboundUpdate(update_id, str(reaction.chat.id), f"reaction:{update_id}", content)


def _pressed(update_id: str, callback: dict[str, Any]) -> InboundUpdate | None:
    """An inline keyboard button pressed: a postback with its ``callback_data``."""
    try:
        query = _CallbackQuery.model_validate(
            {k: v for k, v in callback.items() if k in ("id", "data", "chat_instance")}
        )
        message = _CallbackMessage.model_validate(callback.get("message"))
    except ValidationError:
        return None  # a button of an inline message (no chat): nothing to store
    if query.data is None:
        return None
    content = Content(
        postback=Postback(PostbackSource.BUTTON.value, query.data),
        reply_to_provider_id=str(message.message_id),
    )
    return InboundUpdate(update_id, str(message.chat.id), f"callback:{query.id}", content)


def received(update: dict[str, Any]) -> Received:
    """One update as the core takes it (nothing, for the kinds we do not handle)."""
    parsed = parse_update(update)
    if parsed is None:
        return Received()
    message = InboundMessage(parsed.update_id, parsed.chat_id, parsed.message_id, parsed.content)
    return Received(messages=(message,))


class TelegramReceiver:
    """The webhook (setWebhook with ``secret_token``): Telegram sends that secret back in
    ``X-Telegram-Bot-Api-Secret-Token`` with every update; anything else is refused."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    async def webhook(self, account: str, request: WebhookRequest) -> Received:
        if not self._secret or not hmac.compare_digest(
            request.headers.get(SECRET_HEADER, "").encode(), self._secret.encode()
        ):
            raise AuthError("wrong or missing X-Telegram-Bot-Api-Secret-Token")
        if request.method != "POST":
            raise NotFound("Telegram delivers updates by POST only")
        try:
            update = json.loads(request.body)
        except ValueError:
            raise InvalidRequest("the body is not JSON (a Bot API Update)", "body") from None
        if not isinstance(update, dict):
            raise InvalidRequest("the body is not a Bot API Update object", "body")
        return received(update)
