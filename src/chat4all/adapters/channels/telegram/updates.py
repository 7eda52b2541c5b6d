"""Telegram's inbound side: Bot API ``Update`` objects, from the webhook or from getUpdates,
normalised to the canonical model; the webhook's secret token checked."""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chat4all.domain.model import Attachment, Content, Location
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


class _Update(_Strict):
    update_id: int
    message: _Message | None = None


def parse_update(update: dict[str, Any]) -> InboundUpdate | None:
    """A Bot API ``Update`` normalised to the canonical content; ``None`` for update kinds we
    do not handle (edits, callbacks, members ...). Files become references
    ``telegram-file:<file_id>`` (fetch them with getFile). A malformed update (not as the Bot
    API sends them) is an :class:`InvalidRequest`."""
    try:
        parsed = _Update.model_validate(update)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"not a Bot API Update: {where}: {first['msg']}", where) from None
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
    location = message.location
    extensions: list[tuple[str, str]] = []
    if message.reply_to_message is not None:
        extensions.append(("reply_to_provider_id", str(message.reply_to_message.message_id)))
    if message.sender is not None and message.sender.id is not None:
        extensions.append(("from_id", str(message.sender.id)))
    content = Content(
        text=message.text,
        attachments=tuple(attachments),
        location=Location(location.latitude, location.longitude) if location else None,
        extensions=tuple(sorted(extensions)),
    )
    if content.empty:
        return None
    return InboundUpdate(
        str(parsed.update_id), str(message.chat.id), str(message.message_id), content
    )


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
