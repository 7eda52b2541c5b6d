"""Client webhooks: subscriptions and their durable delivery outbox.

:func:`fanout` runs inside the store's transactions (a message sent or failed, an inbound
message recorded), so an event a client subscribed to is queued exactly when the change that
caused it commits, and survives a crash like any accepted message.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from chat4all.adapters.storage.leases import expire_leases, held, renew_leases
from chat4all.adapters.storage.schema import subscriptions, webhook_outbox
from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.lease import holder_gone
from chat4all.errors import NotFound

__all__ = ["WebhookStore", "Subscription", "Delivery", "fanout", "fanout_many"]


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    tenant: str
    url: str
    events: tuple[str, ...]
    created_at: float


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    subscription_id: str
    url: str
    secret: str
    event: str
    payload: str
    attempts: int
    first_at: float
    holder: str = ""
    """The worker that claimed it (``""``: made by hand, held by nobody)."""


async def fanout(
    conn: AsyncConnection, tenant: str, event: str, data: dict[str, Any], now: float
) -> None:
    """Queue ``event`` for every subscription of ``tenant`` that asked for it."""
    await conn.run_sync(fanout_many, tenant, event, [(data, now)])


def fanout_many(
    conn: sa.Connection,
    tenant: str,
    event: str,
    items: Sequence[tuple[dict[str, Any], float]],
) -> None:
    """:func:`fanout` of several ``(data, now)`` events of one tenant: one look-up of its
    subscriptions, one insert (the store records a dispatcher round's deliveries together).
    Synchronous: the store calls it from its writer thread, or through ``run_sync``."""
    if not items:
        return
    rows = conn.execute(
        sa.select(subscriptions.c.id, subscriptions.c.events).where(
            subscriptions.c.tenant == tenant
        )
    ).all()
    targets = [r.id for r in rows if event in r.events.split(",")]
    if not targets:
        return
    queued = []
    for data, now in items:
        payload = json.dumps({"type": event, "at": now, "data": data}, separators=(",", ":"))
        queued += [
            {
                "subscription_id": sid,
                "event": event,
                "payload": payload,
                "state": "pending",
                "attempts": 0,
                "available_at": now,
                "first_at": now,
            }
            for sid in targets
        ]
    conn.execute(webhook_outbox.insert(), queued)


class WebhookStore:
    def __init__(self, store: SqlStore) -> None:
        self._engine = store.engine
        self._store = store
        self._db = store.db

    async def subscribe(
        self, tenant: str, url: str, events: tuple[str, ...]
    ) -> tuple[Subscription, str]:
        """A new subscription and its signing secret (shown once); the use case
        (:class:`~chat4all.service_layer.subscriptions.Subscriptions`) checked its URL and
        events."""
        sub = Subscription("s_" + secrets.token_hex(10), tenant, url, tuple(events), time.time())
        secret = "whsec_" + secrets.token_urlsafe(24)
        async with self._store.transaction() as conn:
            await conn.execute(
                subscriptions.insert().values(
                    id=sub.id,
                    tenant=tenant,
                    url=url,
                    secret=secret,
                    events=",".join(events),
                    created_at=sub.created_at,
                )
            )
        return sub, secret

    async def of(self, tenant: str) -> list[Subscription]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(subscriptions)
                    .where(subscriptions.c.tenant == tenant)
                    .order_by(subscriptions.c.created_at)
                )
            ).all()
        return [
            Subscription(r.id, r.tenant, r.url, tuple(r.events.split(",")), r.created_at)
            for r in rows
        ]

    async def unsubscribe(self, tenant: str, subscription_id: str) -> None:
        async with self._store.transaction() as conn:
            done = await conn.execute(
                subscriptions.delete().where(
                    subscriptions.c.id == subscription_id, subscriptions.c.tenant == tenant
                )
            )
            if not done.rowcount:
                raise NotFound(f"no subscription {subscription_id!r}")
            await conn.execute(
                webhook_outbox.delete().where(webhook_outbox.c.subscription_id == subscription_id)
            )

    async def recover(self, now: float) -> int:
        """Deliveries in flight under a lease that ran out, back to pending; how many."""
        return len(
            await self._db.write(
                expire_leases, webhook_outbox, webhook_outbox.c.id, now, holder_gone
            )
        )

    async def claim(self, now: float, limit: int, *, worker: str, lease: float) -> list[Delivery]:
        """Due deliveries (oldest first), in flight for ``worker`` until ``now + lease``; on
        PostgreSQL rows another claim is taking are skipped (``FOR UPDATE SKIP LOCKED``)."""
        return await self._db.write(self._claim, now, limit, worker, lease)

    def _claim(
        self, conn: sa.Connection, now: float, limit: int, worker: str, lease: float
    ) -> list[Delivery]:
        expire_leases(conn, webhook_outbox, webhook_outbox.c.id, now)
        due = (
            sa.select(webhook_outbox.c.id)
            .where(webhook_outbox.c.state == "pending", webhook_outbox.c.available_at <= now)
            .order_by(webhook_outbox.c.id)
            .limit(limit)
        )
        if conn.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        ids = list(conn.execute(due).scalars())
        if not ids:
            return []
        conn.execute(
            webhook_outbox.update()
            .where(webhook_outbox.c.id.in_(ids))
            .values(state="inflight", leased_by=worker, lease_until=now + lease)
        )
        rows = conn.execute(
            sa.select(webhook_outbox, subscriptions.c.url, subscriptions.c.secret)
            .join(subscriptions, subscriptions.c.id == webhook_outbox.c.subscription_id)
            .where(webhook_outbox.c.id.in_(ids))
            .order_by(webhook_outbox.c.id)
        ).all()
        return [
            Delivery(
                r.id,
                r.subscription_id,
                r.url,
                r.secret,
                r.event,
                r.payload,
                r.attempts,
                r.first_at,
                holder=worker,
            )
            for r in rows
        ]

    async def renew(self, deliveries: Sequence[Delivery], *, worker: str, until: float) -> None:
        if deliveries:
            async with self._store.transaction() as conn:
                await conn.execute(
                    renew_leases(webhook_outbox, webhook_outbox.c.id, [d.id for d in deliveries]),
                    {"worker": worker, "until": until},
                )

    async def delivered(self, delivery: Delivery) -> None:
        async with self._store.transaction() as conn:
            await conn.execute(webhook_outbox.delete().where(webhook_outbox.c.id == delivery.id))

    async def retry(self, delivery: Delivery, at: float, error: str) -> None:
        async with self._store.transaction() as conn:
            await conn.execute(
                held(webhook_outbox, webhook_outbox.c.id, delivery.id, delivery.holder).values(
                    state="pending",
                    attempts=delivery.attempts + 1,
                    available_at=at,
                    last_error=error,
                    leased_by=None,
                    lease_until=None,
                )
            )

    async def dead(self, delivery: Delivery, error: str) -> None:
        async with self._store.transaction() as conn:
            await conn.execute(
                held(webhook_outbox, webhook_outbox.c.id, delivery.id, delivery.holder).values(
                    state="dead",
                    attempts=delivery.attempts + 1,
                    last_error=error,
                    leased_by=None,
                    lease_until=None,
                )
            )

    async def dead_count(self) -> int:
        async with self._engine.connect() as conn:
            count = await conn.execute(
                sa.select(sa.func.count())
                .select_from(webhook_outbox)
                .where(webhook_outbox.c.state == "dead")
            )
            return int(count.scalar_one())
