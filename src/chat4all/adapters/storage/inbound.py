"""Inbound messages and receipts: what providers tell us, each update recorded once."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from chat4all.adapters.storage.engine import Database
from chat4all.adapters.storage.messages import append
from chat4all.adapters.storage.rows import dump_content, load_message
from chat4all.adapters.storage.schema import conversations, inbound_updates, messages
from chat4all.adapters.storage.status import Announcer, record_event, set_status
from chat4all.domain.model import (
    Content,
    DeliveryStatus,
    Message,
    advances,
    message_document,
    transition,
)
from chat4all.ports import Pending, SendRequest

__all__ = ["InboundLog", "Outcome"]

Outcome = Literal["applied", "recorded", "stale", "unknown"]
"""What a receipt did (the ``chat4all_receipts`` metric's ``outcome``)."""


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
        *,
        echo: bool = False,
        announce: bool = True,
    ) -> Message | None:
        """Store a received message (``request.recipient`` is the other side); ``None`` when
        this provider update was already recorded (providers redeliver). ``echo``: a message
        sent from our account elsewhere than through us (stored as ``outbound``, ``sent``).
        ``announce``: told to the tenant's client webhooks in the same transaction (else
        :meth:`announce_inbound` does it later)."""
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
            request = await _known_targets(conn, request)
            direction, status = (
                ("outbound", DeliveryStatus.SENT) if echo else ("inbound", DeliveryStatus.DELIVERED)
            )
            message_id = await append(
                conn, tenant, request, direction, status, now, provider_message_id
            )
            await record_event(conn, message_id, status, now, None)
            await conn.execute(
                inbound_updates.insert().values(
                    channel=request.channel,
                    account=request.account,
                    update_id=update_id,
                    message_id=message_id,
                    received_at=now,
                    announced_at=now if announce else None,
                )
            )
            recorded = await load_message(conn, tenant, message_id)
            if announce:
                await conn.run_sync(
                    self._announcer.event,
                    tenant,
                    "message.inbound",
                    message_document(recorded),
                    now,
                )
            return recorded

    async def announce_inbound(
        self, tenant: str, message_id: str, content: Content, now: float
    ) -> Message | None:
        """A message recorded without its announcement: its content completed (its
        attachments' media fetched) and told to the tenant's client webhooks, at once; ``None``
        when it was announced already (by another process's sweep): nothing is changed."""
        async with self._db.transaction() as conn:
            claimed = await conn.execute(
                inbound_updates.update()
                .where(
                    inbound_updates.c.message_id == message_id,
                    inbound_updates.c.announced_at.is_(None),
                )
                .values(announced_at=now)
            )
            if not claimed.rowcount:
                return None
            await conn.execute(
                messages.update()
                .where(messages.c.id == message_id, messages.c.tenant == tenant)
                .values(content=dump_content(content))
            )
            recorded = await load_message(conn, tenant, message_id)
            await conn.run_sync(
                self._announcer.event, tenant, "message.inbound", message_document(recorded), now
            )
            return recorded

    async def pending_inbound(self, before: float, limit: int = 100) -> list[Pending]:
        """Received messages stored before ``before`` and not announced yet (the process that
        was downloading their files died), the oldest first, up to ``limit``."""
        async with self._db.transaction() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        inbound_updates.c.channel,
                        inbound_updates.c.account,
                        messages.c.tenant,
                        messages.c.id,
                    )
                    .join(messages, messages.c.id == inbound_updates.c.message_id)
                    .where(
                        inbound_updates.c.announced_at.is_(None),
                        inbound_updates.c.received_at < before,
                    )
                    .order_by(inbound_updates.c.received_at)
                    .limit(limit)
                )
            ).all()
            return [
                Pending(row.channel, row.account, await load_message(conn, row.tenant, row.id))
                for row in rows
            ]

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
        changed, _ = await self.apply_receipt(
            channel, account, status, now, provider_message_id=provider_message_id
        )
        return changed[0] if changed else None

    async def apply_receipt(
        self,
        channel: str,
        account: str,
        status: DeliveryStatus,
        now: float,
        *,
        provider_message_id: str | None = None,
        detail: str | None = None,
        recipient: str | None = None,
        watermark: float | None = None,
    ) -> tuple[list[Message], Outcome]:
        """A provider's status report for the message ``provider_message_id`` we sent through
        ``account``, or (``watermark``) for every outbound message to ``recipient`` sent up to
        that time and not yet at ``status``. Returns the messages whose status moved (each
        announced in this transaction) and the outcome: ``applied``; ``recorded`` (a
        ``failed`` after ``delivered``: in the history, the status kept); ``stale`` (a repeat,
        or late: nothing changes); ``unknown`` (no such message of ours)."""
        query = (
            sa.select(messages.c.id, messages.c.tenant, messages.c.status)
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .where(
                messages.c.direction == "outbound",
                conversations.c.channel == channel,
                conversations.c.account == account,
            )
        )
        if watermark is None:
            query = query.where(messages.c.provider_message_id == provider_message_id)
        else:
            below = [s.value for s in DeliveryStatus if advances(s, status)]
            query = query.where(
                conversations.c.recipient == recipient,
                messages.c.sent_at <= watermark,
                messages.c.status.in_(below),
            ).order_by(messages.c.seq)
        async with self._db.transaction() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return [], ("stale" if watermark is not None else "unknown")
            changed: list[Message] = []
            recorded = False
            for row in rows:
                step = transition(DeliveryStatus(row.status), status)
                if step == "advance":
                    await set_status(conn, row.id, status, now, detail)
                    changed.append(await load_message(conn, row.tenant, row.id))
                elif step == "record":
                    await record_event(conn, row.id, status, now, detail)
                    recorded = True
            if changed:
                await conn.run_sync(self._announcer.status, changed, status.value, detail, now)
            return changed, ("applied" if changed else "recorded" if recorded else "stale")


async def _known_targets(conn: AsyncConnection, request: SendRequest) -> SendRequest:
    """Our ids of the messages a received reply or reaction names by the provider's id (left
    ``None`` for a message we do not have)."""
    content = request.content

    async def ours(provider_id: str | None) -> str | None:
        if provider_id is None:
            return None
        found = (
            await conn.execute(
                sa.select(messages.c.id)
                .join(conversations, conversations.c.id == messages.c.conversation_id)
                .where(
                    messages.c.provider_message_id == provider_id,
                    conversations.c.channel == request.channel,
                    conversations.c.account == request.account,
                )
                .limit(1)
            )
        ).scalar()
        return None if found is None else str(found)

    if content.reply_to is None and content.reply_to_provider_id is not None:
        content = replace(content, reply_to=await ours(content.reply_to_provider_id))
    reaction = content.reaction
    if reaction is not None and reaction.message_id is None:
        found = await ours(reaction.provider_message_id)
        content = replace(content, reaction=replace(reaction, message_id=found))
    return request if content is request.content else replace(request, content=content)
