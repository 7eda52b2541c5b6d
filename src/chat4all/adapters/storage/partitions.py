"""Workers' leases on a log's partitions (``partition_leases``, ``partition_workers``).

A rebalance is one short transaction, serialised per log by a transaction-scoped advisory lock
on PostgreSQL (SQLite's writes are serial anyway): the worker says it is alive, the fair share
is computed from the workers alive, and the worker renews what it holds, takes free or expired
partitions up to its share, and gives back its surplus. A worker that joins is counted at once,
so the others give back partitions at their next rebalance and it takes them at its next; a
worker that dies stops renewing, and its partitions are free once its lease ran out.
"""

from __future__ import annotations

import math
from typing import Final

import sqlalchemy as sa

from chat4all.adapters.storage.engine import Database
from chat4all.adapters.storage.schema import partition_leases, partition_workers

__all__ = ["SqlPartitionLeases", "PARTITION_LOCK_SPACE"]

PARTITION_LOCK_SPACE: Final = 0x0C4B
"""First key of the per-log advisory lock of rebalances (the second: the log name's hash)."""


class SqlPartitionLeases:
    """:class:`~chat4all.ports.PartitionLeases` for the log ``log`` (its stream's name)."""

    def __init__(self, db: Database, log: str) -> None:
        self._db = db
        self._log = log

    async def rebalance(self, worker: str, now: float, lease: float, partitions: int) -> list[int]:
        return await self._db.write(self._rebalance, worker, now, lease, partitions)

    async def release(self, worker: str) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                partition_leases.update()
                .where(partition_leases.c.log == self._log, partition_leases.c.holder == worker)
                .values(holder=None, lease_until=0.0)
            )
            await conn.execute(
                partition_workers.delete().where(
                    partition_workers.c.log == self._log, partition_workers.c.worker == worker
                )
            )

    async def holders(self) -> dict[int, str | None]:
        """Every partition's holder now (for tests and operators)."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(
                    partition_leases.c.partition,
                    partition_leases.c.holder,
                    partition_leases.c.lease_until,
                ).where(partition_leases.c.log == self._log)
            )
            return {r.partition: r.holder for r in rows}

    def _rebalance(
        self, conn: sa.Connection, worker: str, now: float, lease: float, partitions: int
    ) -> list[int]:
        log = self._log
        if conn.dialect.name == "postgresql":
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:space, hashtext(:log))"),
                {"space": PARTITION_LOCK_SPACE, "log": log},
            )
        members = partition_workers.c
        alive = conn.execute(
            partition_workers.update()
            .where(members.log == log, members.worker == worker)
            .values(alive_until=now + lease)
        )
        if not alive.rowcount:
            conn.execute(
                partition_workers.insert().values(log=log, worker=worker, alive_until=now + lease)
            )
        conn.execute(
            partition_workers.delete().where(members.log == log, members.alive_until < now)
        )
        live = conn.execute(
            sa.select(sa.func.count()).select_from(partition_workers).where(members.log == log)
        ).scalar_one()
        share = math.ceil(partitions / max(1, int(live)))

        leases = partition_leases.c
        rows = conn.execute(
            sa.select(leases.partition, leases.holder, leases.lease_until).where(leases.log == log)
        ).all()
        known = {r.partition for r in rows}
        missing = [p for p in range(partitions) if p not in known]
        if missing:
            conn.execute(
                partition_leases.insert(),
                [{"log": log, "partition": p, "holder": None, "lease_until": 0.0} for p in missing],
            )
        mine = sorted(r.partition for r in rows if r.holder == worker and r.partition < partitions)
        free = [
            r.partition
            for r in rows
            if r.partition < partitions
            and r.holder != worker
            and (r.holder is None or r.lease_until < now)
        ] + missing
        surplus = mine[share:] + [
            r.partition for r in rows if r.holder == worker and r.partition >= partitions
        ]
        mine = mine[:share] + sorted(free)[: max(0, share - len(mine))]
        if surplus:
            conn.execute(
                partition_leases.update()
                .where(leases.log == log, leases.partition.in_(surplus))
                .values(holder=None, lease_until=0.0)
            )
        if mine:
            conn.execute(
                partition_leases.update()
                .where(leases.log == log, leases.partition.in_(mine))
                .values(holder=worker, lease_until=now + lease)
            )
        return sorted(mine)
