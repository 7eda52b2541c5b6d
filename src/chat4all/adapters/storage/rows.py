"""Rows <-> value objects: messages, conversations, content documents and page cursors."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from chat4all.adapters.storage.schema import messages, status_events
from chat4all.domain.model import (
    Content,
    Conversation,
    DeliveryStatus,
    Message,
    StatusEvent,
    content_document,
    content_from,
)
from chat4all.errors import InvalidRequest, NotFound

__all__ = [
    "new_id",
    "dump_content",
    "load_content",
    "to_message",
    "to_conversation",
    "load_message",
    "dump_message",
    "undump_message",
    "encode_cursor",
    "decode_cursor",
    "decode_seq_cursor",
]


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def dump_content(content: Content) -> str:
    return json.dumps(content_document(content), separators=(",", ":"))


def load_content(raw: str) -> Content:
    return content_from(json.loads(raw))


def to_message(row: Any, events: Sequence[Any]) -> Message:
    return Message(
        id=row.id,
        tenant=row.tenant,
        conversation_id=row.conversation_id,
        seq=int(row.seq),
        direction=row.direction,
        content=load_content(row.content),
        status=DeliveryStatus(row.status),
        created_at=float(row.created_at),
        provider_message_id=row.provider_message_id,
        history=tuple(StatusEvent(DeliveryStatus(e.status), float(e.at), e.detail) for e in events),
    )


def to_conversation(row: Any) -> Conversation:
    return Conversation(
        id=row.id,
        tenant=row.tenant,
        channel=row.channel,
        account=row.account,
        recipient=row.recipient,
        last_message_at=row.last_message_at,
    )


async def load_message(conn: AsyncConnection, tenant: str, message_id: str) -> Message:
    """``tenant``'s message with its status history; ``NotFound`` for anyone else's."""
    row = (
        await conn.execute(
            sa.select(messages).where(messages.c.id == message_id, messages.c.tenant == tenant)
        )
    ).first()
    if row is None:
        raise NotFound(f"no message {message_id!r}")
    events = (
        await conn.execute(
            sa.select(status_events)
            .where(status_events.c.message_id == message_id)
            .order_by(status_events.c.id)
        )
    ).all()
    return to_message(row, events)


def dump_message(message: Message) -> str:
    """A message as it is now, to be given back exactly (an idempotent replay's answer)."""
    return json.dumps(
        {
            "id": message.id,
            "tenant": message.tenant,
            "conversation_id": message.conversation_id,
            "seq": message.seq,
            "direction": message.direction,
            "content": content_document(message.content),
            "status": message.status.value,
            "created_at": message.created_at,
            "provider_message_id": message.provider_message_id,
            "history": [[e.status.value, e.at, e.detail] for e in message.history],
        },
        separators=(",", ":"),
    )


def undump_message(raw: str) -> Message:
    doc = json.loads(raw)
    return Message(
        id=doc["id"],
        tenant=doc["tenant"],
        conversation_id=doc["conversation_id"],
        seq=int(doc["seq"]),
        direction=doc["direction"],
        content=content_from(doc["content"]),
        status=DeliveryStatus(doc["status"]),
        created_at=float(doc["created_at"]),
        provider_message_id=doc["provider_message_id"],
        history=tuple(StatusEvent(DeliveryStatus(s), float(at), d) for s, at, d in doc["history"]),
    )


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("cursor is not one this API returned", field="cursor") from None


def decode_seq_cursor(cursor: str) -> int:
    decoded = decode_cursor(cursor)
    if not decoded.isascii() or not decoded.isdigit():
        raise InvalidRequest("cursor is not one this API returned", field="cursor")
    return int(decoded)
