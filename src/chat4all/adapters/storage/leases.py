"""Leases on an outbox table (the messages' and the webhooks' share the columns ``state``,
``leased_by`` and ``lease_until``): expiring them, renewing them, and changing a row only while
its holder still holds it. The statements are written once here, for both tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

__all__ = ["expire_leases", "renew_leases", "held"]


def expire_leases(
    conn: sa.Connection,
    table: sa.Table,
    key: sa.Column[Any],
    now: float,
    gone: Callable[[str], bool] | None = None,
) -> set[Any]:
    """Rows of ``table`` in flight under a lease that ran out, back to pending; their keys.
    With ``gone``, also the rows of the holders it says are gone (a dead process of this host,
    :func:`~chat4all.domain.lease.holder_gone`), lease or not. On PostgreSQL rows another
    transaction has locked are left to it (``SKIP LOCKED``): two claims expiring leases at once
    never wait for each other, so they never deadlock."""
    postgresql = conn.dialect.name == "postgresql"
    if gone is None:  # every claim's: built once per table and dialect
        statement = _EXPIRE.get((table.name, postgresql))
        if statement is None:
            lapsed = sa.or_(
                table.c.lease_until < sa.bindparam("now", type_=sa.Float),
                table.c.lease_until.is_(None),
            )
            statement = _EXPIRE[table.name, postgresql] = _expire(table, key, lapsed, postgresql)
        return set(conn.execute(statement, {"now": now}).scalars().all())
    lapsed = sa.or_(table.c.lease_until < now, table.c.lease_until.is_(None))
    holders = conn.execute(
        sa.select(table.c.leased_by)
        .where(table.c.state == "inflight", table.c.leased_by.is_not(None))
        .distinct()
    ).scalars()
    orphans = [h for h in holders if gone(h)]
    if orphans:
        lapsed = sa.or_(lapsed, table.c.leased_by.in_(orphans))
    return set(conn.execute(_expire(table, key, lapsed, postgresql)).scalars().all())


_EXPIRE: dict[tuple[str, bool], Any] = {}
"""Each table's lease expiry with ``:now`` bound, per dialect (building it cost more than
running it, on every claim)."""


def _expire(table: sa.Table, key: sa.Column[Any], lapsed: Any, postgresql: bool) -> Any:
    """Rows of ``table`` in flight and ``lapsed``, back to pending, returning their keys."""
    expired = sa.select(key).where(table.c.state == "inflight", lapsed)
    if postgresql:
        expired = expired.with_for_update(skip_locked=True)
    return (
        table.update()
        .where(key.in_(expired.scalar_subquery()))
        .values(state="pending", leased_by=None, lease_until=None)
        .returning(key)
    )


def renew_leases(table: sa.Table, key: sa.Column[Any], ids: Sequence[Any]) -> Any:
    """The rows ``ids`` that ``:worker`` still holds, leased until ``:until`` (both bound at
    execution)."""
    return (
        table.update()
        .where(
            key.in_(list(ids)),
            table.c.state == "inflight",
            table.c.leased_by == sa.bindparam("worker", type_=sa.String),
        )
        .values(lease_until=sa.bindparam("until", type_=sa.Float))
    )


def held(table: sa.Table, key: sa.Column[Any], row: Any, holder: str) -> Any:
    """An update of ``row`` while ``holder`` still holds it (a lease that ran out and was taken
    by another worker is that worker's now); an empty ``holder`` (no claim made it): always."""
    update = table.update().where(key == row)
    if holder:
        update = update.where(table.c.leased_by == holder, table.c.state == "inflight")
    return update
