"""Status events: a message's status moves forward only, each move recorded with its time, and
announced in the transaction that made it: to subscribers (``message.status`` webhooks) and as
a stored live event (``live_events``), handed to the live bus once the transaction committed."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from chat4all.adapters.storage.engine import after_commit
from chat4all.adapters.storage.schema import live_events, messages, status_events
from chat4all.domain.model import DeliveryStatus, Message, advances, status_document
from chat4all.service_layer.events import Event

__all__ = ["Fanout", "Live", "Announcer", "set_status", "record_event"]

Fanout = Callable[[sa.Connection, str, str, Sequence[tuple[dict[str, Any], float]]], None]
"""``(conn, tenant, event type, [(data, now), ...])``; called with a synchronous connection
(``AsyncConnection.run_sync`` on the async paths)."""

_COMPACT: Final = (",", ":")

Live = Callable[[Sequence[Event]], None]
"""Takes the events of a transaction, with their stored ids, once it committed."""


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
    """Records status changes and inbound messages as live events (``live_events``), hands
    them to :attr:`fanout` in the transaction (none: nobody listens) and to :attr:`live` after
    its commit (none: not published)."""

    def __init__(self) -> None:
        self.fanout: Fanout | None = None
        """Called inside the transaction of every change a client may subscribe to
        (``message.status``, ``message.inbound``): webhooks queue their deliveries there."""
        self.live: Live | None = None
        """Called after the commit of every such change, with the stored events (their ids are
        the ones a stream resumes from)."""

    def status(
        self,
        conn: sa.Connection,
        changed: Sequence[Message],
        status: str,
        detail: str | None,
        now: float | Sequence[float],
    ) -> None:
        """``message.status`` for each of ``changed`` (at ``now``, or at its own ``now[i]``)."""
        events: list[tuple[str, str, dict[str, Any], float]] = []
        by_tenant: dict[str, list[tuple[dict[str, Any], float]]] = {}
        for n, message in enumerate(changed):
            at = now if isinstance(now, float | int) else now[n]
            data = status_document(message, status, detail)
            events.append((message.tenant, "message.status", data, at))
            by_tenant.setdefault(message.tenant, []).append((data, at))
        self._store(conn, events)
        if self.fanout is None:
            return
        for tenant, batch in by_tenant.items():
            self.fanout(conn, tenant, "message.status", batch)

    def event(
        self, conn: sa.Connection, tenant: str, event: str, data: dict[str, Any], now: float
    ) -> None:
        """Any other event of ``tenant`` (``message.inbound``)."""
        self._store(conn, [(tenant, event, data, now)])
        if self.fanout is not None:
            self.fanout(conn, tenant, event, [(data, now)])

    def _store(
        self, conn: sa.Connection, events: Sequence[tuple[str, str, dict[str, Any], float]]
    ) -> None:
        """``events`` as ``live_events`` rows, published with their ids after the commit (their
        data as stored: what a replay reads back)."""
        if not events:
            return
        encoded = [json.dumps(data, separators=_COMPACT) for _, _, data, _ in events]
        ids = (
            conn.execute(
                live_events.insert().returning(live_events.c.id, sort_by_parameter_order=True),
                [
                    {"tenant": t, "type": kind, "data": text, "at": at}
                    for (t, kind, _, at), text in zip(events, encoded, strict=True)
                ],
            )
            .scalars()
            .all()
        )
        if self.live is not None:
            stored = [
                Event(i, t, kind, json.loads(text), at)
                for i, (t, kind, _, at), text in zip(ids, events, encoded, strict=True)
            ]
            after_commit(conn, functools.partial(self.live, stored))
