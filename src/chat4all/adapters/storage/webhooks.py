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
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from chat4all.adapters.storage.sql import SqlStore, metadata
from chat4all.errors import InvalidRequest, NotFound

__all__ = ["WebhookStore", "Subscription", "Delivery", "fanout", "fanout_many", "EVENT_TYPES"]

EVENT_TYPES: Final = ("message.status", "message.inbound")

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False, index=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("secret", sa.String(64), nullable=False),
    sa.Column("events", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
webhook_outbox = sa.Table(
    "webhook_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subscription_id", sa.String(32), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    # pending, inflight or dead; a delivered row is deleted
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("available_at", sa.Float, nullable=False),
    sa.Column("first_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Index("webhook_due", "state", "available_at"),
)


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

    async def subscribe(
        self, tenant: str, url: str, events: tuple[str, ...]
    ) -> tuple[Subscription, str]:
        """A new subscription and its signing secret (shown once)."""
        if not url.startswith(("https://", "http://")):
            raise InvalidRequest("url must be http(s)", field="url")
        unknown = [e for e in events if e not in EVENT_TYPES]
        if unknown or not events:
            raise InvalidRequest(f"events must be some of {', '.join(EVENT_TYPES)}", field="events")
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

    async def recover(self) -> int:
        async with self._store.transaction() as conn:
            done = await conn.execute(
                webhook_outbox.update()
                .where(webhook_outbox.c.state == "inflight")
                .values(state="pending")
            )
            return int(done.rowcount or 0)

    async def claim(self, now: float, limit: int) -> list[Delivery]:
        query = (
            sa.select(webhook_outbox, subscriptions.c.url, subscriptions.c.secret)
            .join(subscriptions, subscriptions.c.id == webhook_outbox.c.subscription_id)
            .where(webhook_outbox.c.state == "pending", webhook_outbox.c.available_at <= now)
            .order_by(webhook_outbox.c.id)
            .limit(limit)
        )
        async with self._store.transaction() as conn:
            rows = (await conn.execute(query)).all()
            if rows:
                await conn.execute(
                    webhook_outbox.update()
                    .where(webhook_outbox.c.id.in_([r.id for r in rows]))
                    .values(state="inflight")
                )
        return [
            Delivery(
                r.id, r.subscription_id, r.url, r.secret, r.event, r.payload, r.attempts, r.first_at
            )
            for r in rows
        ]

    async def delivered(self, delivery: Delivery) -> None:
        async with self._store.transaction() as conn:
            await conn.execute(webhook_outbox.delete().where(webhook_outbox.c.id == delivery.id))

    async def retry(self, delivery: Delivery, at: float, error: str) -> None:
        async with self._store.transaction() as conn:
            await conn.execute(
                webhook_outbox.update()
                .where(webhook_outbox.c.id == delivery.id)
                .values(
                    state="pending",
                    attempts=delivery.attempts + 1,
                    available_at=at,
                    last_error=error,
                )
            )

    async def dead(self, delivery: Delivery, error: str) -> None:
        async with self._store.transaction() as conn:
            await conn.execute(
                webhook_outbox.update()
                .where(webhook_outbox.c.id == delivery.id)
                .values(state="dead", attempts=delivery.attempts + 1, last_error=error)
            )

    async def dead_count(self) -> int:
        async with self._engine.connect() as conn:
            count = await conn.execute(
                sa.select(sa.func.count())
                .select_from(webhook_outbox)
                .where(webhook_outbox.c.state == "dead")
            )
            return int(count.scalar_one())
