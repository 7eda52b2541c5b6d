"""Status events: a message's status moves forward only, each move recorded with its time, and
announced to subscribers (``message.status`` webhooks) in the transaction that made it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from chat4all.adapters.storage.schema import messages, status_events
from chat4all.domain.model import DeliveryStatus, Message, advances, status_document

__all__ = ["Fanout", "Announcer", "set_status", "record_event"]

Fanout = Callable[[sa.Connection, str, str, Sequence[tuple[dict[str, Any], float]]], None]
"""``(conn, tenant, event type, [(data, now), ...])``; called with a synchronous connection
(``AsyncConnection.run_sync`` on the async paths)."""


async def set_status(
    conn: AsyncConnection,
    message_id: str,
    status: DeliveryStatus,
    now: float,
    detail: str | None,
) -> bool:
    """Move the message to ``status`` and record the event, when that moves it forward."""
    current = (
        await conn.execute(sa.select(messages.c.status).where(messages.c.id == message_id))
    ).scalar_one()
    if not advances(DeliveryStatus(current), status):
        return False
    values: dict[str, Any] = {"status": status.value}
    if status is DeliveryStatus.SENT:
        values["sent_at"] = sa.func.coalesce(messages.c.sent_at, now)
    await conn.execute(messages.update().where(messages.c.id == message_id).values(**values))
    await record_event(conn, message_id, status, now, detail)
    return True


async def record_event(
    conn: AsyncConnection, message_id: str, status: DeliveryStatus, now: float, detail: str | None
) -> None:
    """One event in the message's history (its status is the caller's business)."""
    await conn.execute(
        status_events.insert().values(
            message_id=message_id, status=status.value, at=now, detail=detail
        )
    )


class Announcer:
    """Hands status changes and inbound messages to :attr:`fanout` (none: nobody listens)."""

    def __init__(self) -> None:
        self.fanout: Fanout | None = None
        """Called inside the transaction of every change a client may subscribe to
        (``message.status``, ``message.inbound``): webhooks queue their deliveries there."""

    def status(
        self,
        conn: sa.Connection,
        changed: Sequence[Message],
        status: str,
        detail: str | None,
        now: float | Sequence[float],
    ) -> None:
        """``message.status`` for each of ``changed`` (at ``now``, or at its own ``now[i]``)."""
        if self.fanout is None:
            return
        by_tenant: dict[str, list[tuple[dict[str, Any], float]]] = {}
        for n, message in enumerate(changed):
            at = now if isinstance(now, float | int) else now[n]
            data = status_document(message, status, detail)
            by_tenant.setdefault(message.tenant, []).append((data, at))
        for tenant, events in by_tenant.items():
            self.fanout(conn, tenant, "message.status", events)

    def event(
        self, conn: sa.Connection, tenant: str, event: str, data: dict[str, Any], now: float
    ) -> None:
        """Any other event of ``tenant`` (``message.inbound``)."""
        if self.fanout is not None:
            self.fanout(conn, tenant, event, [(data, now)])
