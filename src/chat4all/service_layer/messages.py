"""Use cases on messages. REST and gRPC call these and nothing else, so they cannot drift."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Final

from chat4all.domain.model import Channel, Content, Conversation, Message, content_document
from chat4all.errors import InvalidRequest
from chat4all.ports import Accepted, MessageStore, Page, SendRequest

__all__ = ["Messages", "LIMITS", "MAX_PAGE"]

MAX_PAGE: Final = 200


class _Limits:
    def __init__(self, text: int, caption: int, attachments: int, buttons: int) -> None:
        self.text, self.caption, self.attachments, self.buttons = (
            text,
            caption,
            attachments,
            buttons,
        )


LIMITS: Final = {
    # Bot API: sendMessage text 1-4096 characters, captions up to 1024, inline keyboards.
    Channel.TELEGRAM: _Limits(text=4096, caption=1024, attachments=10, buttons=100),
    Channel.WHATSAPP: _Limits(text=4096, caption=1024, attachments=1, buttons=3),
    Channel.MESSENGER: _Limits(text=2000, caption=2000, attachments=1, buttons=3),
    Channel.INSTAGRAM: _Limits(text=1000, caption=1000, attachments=1, buttons=3),
}


def validate(request: SendRequest) -> None:
    """Per-channel limits, checked before a message is accepted (never after)."""
    content, limits = request.content, LIMITS[request.channel]
    if content.empty:
        raise InvalidRequest(
            "a message needs text, an attachment, a location or a template", field="content"
        )
    if content.text is not None and len(content.text) > limits.text:
        raise InvalidRequest(
            f"text is {len(content.text)} characters; {request.channel.value} allows {limits.text}",
            field="content.text",
        )
    if len(content.attachments) > limits.attachments:
        raise InvalidRequest(
            f"{len(content.attachments)} attachments; {request.channel.value} allows "
            f"{limits.attachments} per message",
            field="content.attachments",
        )
    for n, attachment in enumerate(content.attachments):
        if attachment.caption and len(attachment.caption) > limits.caption:
            raise InvalidRequest(
                f"caption is {len(attachment.caption)} characters; {request.channel.value} "
                f"allows {limits.caption}",
                field=f"content.attachments[{n}].caption",
            )
        if not attachment.url.startswith(("http://", "https://")):
            raise InvalidRequest(
                "an attachment is a reference: an http(s) URL",
                field=f"content.attachments[{n}].url",
            )
    if len(content.buttons) > limits.buttons:
        raise InvalidRequest(
            f"{len(content.buttons)} buttons; {request.channel.value} allows {limits.buttons}",
            field="content.buttons",
        )
    if not request.recipient.strip():
        raise InvalidRequest("recipient is empty", field="recipient")


def body_hash(request: SendRequest) -> str:
    """What an Idempotency-Key is bound to: the whole request, canonically serialised."""
    doc = {
        "channel": request.channel.value,
        "account": request.account,
        "recipient": request.recipient,
        "content": content_document(request.content),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class Messages:
    def __init__(self, store: MessageStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def send(
        self, tenant: str, request: SendRequest, idempotency_key: str | None = None
    ) -> Accepted:
        """Validate and persist; the message is durable when this returns (HTTP 202)."""
        validate(request)
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            raise InvalidRequest(
                "Idempotency-Key must be 1-255 characters", field="Idempotency-Key"
            )
        key = (idempotency_key, body_hash(request)) if idempotency_key else None
        return await self._store.accept(tenant, request, key, self._clock())

    async def get(self, tenant: str, message_id: str) -> Message:
        return await self._store.get(tenant, message_id)

    async def conversations(
        self, tenant: str, cursor: str | None = None, limit: int = 50
    ) -> Page[Conversation]:
        return await self._store.conversations(tenant, cursor, _page(limit))

    async def history(
        self, tenant: str, conversation_id: str, cursor: str | None = None, limit: int = 50
    ) -> Page[Message]:
        return await self._store.messages(tenant, conversation_id, cursor, _page(limit))


def _page(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be 1-{MAX_PAGE}", field="limit")
    return limit


def text(value: str) -> Content:
    """Shorthand for a text-only content (tests, examples)."""
    return Content(text=value)
