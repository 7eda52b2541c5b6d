"""Retention: idempotency keys, seen provider update ids and stored live events are forgotten
after a while (the newest live event is kept, so a stream can tell an id it names was purged).

Safe with several processes purging at once: each batch is chosen ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL (a batch another purger holds is left to it), and a delete of rows already gone
deletes nothing.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from chat4all.adapters.storage.engine import Database
from chat4all.adapters.storage.schema import idempotency, inbound_updates, live_events

__all__ = ["Retention"]


class Retention:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def purge(self, older_than: float, batch: int = 1000) -> tuple[int, int]:
        """Forget idempotency keys and seen provider update ids recorded before
        ``older_than``, a batch per transaction (short write locks); ``(keys, updates)``. Live
        events recorded before then go too, but for the newest."""
        keys = await self._purge(
            idempotency,
            (idempotency.c.tenant, idempotency.c.key),
            idempotency.c.created_at < older_than,
            batch,
        )
        updates = await self._purge(
            inbound_updates,
            (inbound_updates.c.channel, inbound_updates.c.account, inbound_updates.c.update_id),
            inbound_updates.c.received_at < older_than,
            batch,
        )
        newest = sa.select(sa.func.max(live_events.c.id)).scalar_subquery()
        await self._purge(
            live_events,
            (live_events.c.id,),
            sa.and_(live_events.c.at < older_than, live_events.c.id < newest),
            batch,
        )
        return keys, updates

    async def _purge(self, table: sa.Table, key: tuple[Any, ...], old: Any, batch: int) -> int:
        removed = 0
        while True:
            async with self._db.transaction() as conn:
                chosen = sa.select(*key).where(old).limit(batch)
                if conn.dialect.name == "postgresql":
                    chosen = chosen.with_for_update(skip_locked=True)
                result = await conn.execute(table.delete().where(sa.tuple_(*key).in_(chosen)))
            count = int(result.rowcount or 0)
            removed += count
            if count < batch:
                return removed
