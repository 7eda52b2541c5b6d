"""Inbound messages and receipts: what providers tell us, each update recorded once."""

from __future__ import annotations

import sqlalchemy as sa

from chat4all.adapters.storage.engine import Database
from chat4all.adapters.storage.messages import append
from chat4all.adapters.storage.rows import load_message
from chat4all.adapters.storage.schema import conversations, inbound_updates, messages, status_events
from chat4all.adapters.storage.status import Announcer, set_status
from chat4all.domain.model import DeliveryStatus, Message, advances, message_document
from chat4all.ports import SendRequest

__all__ = ["InboundLog"]


class InboundLog:
    """Received messages (deduplicated by the provider's update id) and delivery receipts."""

    def __init__(self, db: Database, announcer: Announcer) -> None:
        self._db = db
        self._announcer = announcer

    async def record_inbound(
        self,
        tenant: str,
        request: SendRequest,
        update_id: str,
        provider_message_id: str,
        now: float,
    ) -> Message | None:
        """Store a received message (``request.recipient`` is the other side); ``None`` when
        this provider update was already recorded (providers redeliver)."""
        async with self._db.transaction() as conn:
            seen = (
                await conn.execute(
                    sa.select(inbound_updates.c.message_id).where(
                        inbound_updates.c.channel == request.channel,
                        inbound_updates.c.account == request.account,
                        inbound_updates.c.update_id == update_id,
                    )
                )
            ).first()
            if seen is not None:
                return None
            message_id = await append(
                conn, tenant, request, "inbound", DeliveryStatus.DELIVERED, now, provider_message_id
            )
            await conn.execute(
                status_events.insert().values(
                    message_id=message_id, status=DeliveryStatus.DELIVERED.value, at=now
                )
            )
            await conn.execute(
                inbound_updates.insert().values(
                    channel=request.channel,
                    account=request.account,
                    update_id=update_id,
                    message_id=message_id,
                    received_at=now,
                )
            )
            recorded = await load_message(conn, tenant, message_id)
            await conn.run_sync(
                self._announcer.event, tenant, "message.inbound", message_document(recorded), now
            )
            return recorded

    async def record_receipt(
        self,
        channel: str,
        account: str,
        provider_message_id: str,
        status: DeliveryStatus,
        now: float,
    ) -> Message | None:
        """A provider's ``delivered`` / ``read`` for a message we sent through ``account``.
        The message when its status moved; ``None`` when no such message is ours, or when the
        receipt would not move it forward (a repeat, a late ``delivered`` after ``read``)."""
        query = (
            sa.select(messages.c.id, messages.c.tenant, messages.c.status)
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .where(
                messages.c.provider_message_id == provider_message_id,
                messages.c.direction == "outbound",
                conversations.c.channel == channel,
                conversations.c.account == account,
            )
        )
        async with self._db.transaction() as conn:
            row = (await conn.execute(query)).first()
            if row is None or not advances(DeliveryStatus(row.status), status):
                return None
            await set_status(conn, row.id, status, now, None)
            message = await load_message(conn, row.tenant, row.id)
            await conn.run_sync(self._announcer.status, [message], status.value, None, now)
            return message
