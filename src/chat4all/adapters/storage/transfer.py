"""Copying a whole hub's database into another one (``chat4all migrate --to``): the embedded
SQLite file into PostgreSQL, when one machine is no longer enough.

Every table of :data:`~chat4all.adapters.storage.schema.metadata` is copied, parents before
children (``metadata.sorted_tables``), so a table added later is copied with no change here;
only the ``runtime`` ones (the running processes' partition leases) are not.
Rows are streamed from the source in batches of :data:`BATCH` and written in batches, so memory
stays bounded whatever the hub's size. The whole copy is one transaction of the target: a copy
that fails leaves the target as empty as it found it, and can simply be run again.

Both databases are opened (and so migrated to this release's newest schema) by the caller; the
source is read in one read transaction (one snapshot of every table). The target must be empty:
two hubs are never merged. After the rows, the target's id sequences are moved past the copied
ids (new rows do not collide), and the rows the old process had in flight are pending again (the
old process is stopped, :func:`check_stopped`; its leases mean nothing on the new deployment).
Media bytes are not in
the database: they stay in the media directory or bucket, which the new deployment must use.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from chat4all.adapters.storage.engine import Database
from chat4all.adapters.storage.leases import expire_leases
from chat4all.adapters.storage.schema import metadata

__all__ = [
    "BATCH",
    "Copied",
    "CopyFailed",
    "HubInUse",
    "TargetNotEmpty",
    "check_stopped",
    "copy_database",
]

BATCH: Final = 1000
"""Rows read and written at a time."""

Progress = Callable[[str, int, bool], None]
"""Called with a table's name, the rows copied so far and whether the table is done: after
each batch, and once at the end of each table."""


# Operator errors of the copy (the command line shows them), not chat4all.errors' classes:
# those are what an API client can be answered.


class TargetNotEmpty(Exception):
    """The target database already holds rows (``tables`` names where): it is another hub."""

    def __init__(self, tables: list[str]) -> None:
        super().__init__(
            f"the target database is not empty (rows in {', '.join(tables)}); refusing to "
            "merge two hubs: copy into a new, empty database"
        )
        self.tables = tables


class HubInUse(Exception):
    """Another process has the source open: the hub (or another command) still runs."""


class CopyFailed(Exception):
    """The target refused a row (a value PostgreSQL checks and SQLite did not: a string longer
    than its column); the message names the table. Nothing was written."""


@dataclass(slots=True)
class Copied:
    """What a copy did."""

    rows: dict[str, int] = field(default_factory=dict)
    """Rows copied, by table (every table of the schema, in copy order)."""
    released: int = 0
    """Rows in flight in the source (messages, webhook deliveries), pending in the target."""


async def copy_database(
    source: Database, target: Database, *, batch: int = BATCH, progress: Progress | None = None
) -> Copied:
    """Copy every row of ``source`` into ``target``, in one transaction of ``target``.
    :class:`TargetNotEmpty` when ``target`` holds any row, :class:`CopyFailed` when ``target``
    refuses a row; then nothing is written. The hub must be stopped (:func:`check_stopped`)."""
    tables = [t for t in metadata.sorted_tables if not t.info.get("runtime")]
    copied = Copied()
    async with _snapshot(source) as reading, target.engine.begin() as writing:
        full = [t.name for t in tables if await _has_rows(writing, t)]
        if full:
            raise TargetNotEmpty(full)
        for table in tables:
            count = 0
            rows = await reading.stream(sa.select(table).order_by(*table.primary_key.columns))
            async for part in rows.partitions(batch):
                try:
                    await writing.execute(table.insert(), [dict(r._mapping) for r in part])
                except sa.exc.DBAPIError as exc:
                    why = (str(exc.orig).splitlines() or [""])[0]
                    raise CopyFailed(
                        f"the target refused a row of {table.name} (after {count} rows): "
                        f"{type(exc.orig).__name__}: {why}"
                    ) from exc
                count += len(part)
                if progress is not None:
                    progress(table.name, count, False)
            copied.rows[table.name] = count
            if progress is not None:
                progress(table.name, count, True)
        for table in tables:
            copied.released += await _release_leases(writing, table)
            await _move_sequence(writing, table)
    return copied


def check_stopped(path: Path) -> None:
    """:class:`HubInUse` when another process has the SQLite database at ``path`` open (a
    running hub always does: its connections stay open, and in WAL mode each holds a shared
    lock on the file while it is open, even idle), found by asking for an exclusive lock
    without waiting. The file must exist."""
    probe = sqlite3.connect(
        path.resolve().as_uri() + "?mode=rw", uri=True, timeout=0, isolation_level=None
    )
    try:
        probe.execute("PRAGMA locking_mode=EXCLUSIVE")
        try:
            probe.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            raise HubInUse(
                f"another process has {path} open (the hub, or another chat4all command): "
                "stop the hub first, then copy"
            ) from None
        probe.execute("ROLLBACK")
    finally:
        probe.close()


@contextlib.asynccontextmanager
async def _snapshot(db: Database) -> AsyncIterator[AsyncConnection]:
    """A connection reading ``db`` as of one moment, for the whole block."""
    async with db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":  # the driver begins only before a write: begin now
            await conn.exec_driver_sql("BEGIN")
        else:
            await conn.execution_options(isolation_level="REPEATABLE READ")
        try:
            yield conn
        finally:
            await conn.rollback()


async def _has_rows(conn: AsyncConnection, table: sa.Table) -> bool:
    return bool((await conn.execute(sa.select(sa.exists().select_from(table)))).scalar())


def _leased(table: sa.Table) -> bool:
    """Whether ``table`` is an outbox with leases (:mod:`.leases`) under one key column."""
    return {"state", "leased_by", "lease_until"} <= set(table.c.keys()) and len(
        table.primary_key.columns
    ) == 1


async def _release_leases(conn: AsyncConnection, table: sa.Table) -> int:
    """The copied rows of ``table`` that were in flight, pending again; how many."""
    if not _leased(table):
        return 0
    key = next(iter(table.primary_key.columns))
    return len(await conn.run_sync(expire_leases, table, key, math.inf))


async def _move_sequence(conn: AsyncConnection, table: sa.Table) -> None:
    """PostgreSQL: ``table``'s id sequence past the highest copied id (the copy wrote the ids
    itself, the sequence has not moved)."""
    column: Any = table.autoincrement_column
    if column is None or conn.dialect.name != "postgresql":
        return
    await conn.execute(
        sa.select(
            sa.func.setval(
                sa.func.pg_get_serial_sequence(table.name, column.name),
                sa.select(sa.func.coalesce(sa.func.max(column), 0) + 1).scalar_subquery(),
                False,
            )
        )
    )
