"""The security audit log: append-only and hash-chained, so tampering is detectable.

Each entry stores the SHA-256 of the previous entry's hash and its own canonical content; one
edited, deleted or reordered row breaks the chain from there on, and :meth:`AuditLog.verify`
names the first broken entry. Appends are serialised in a transaction that reads the last hash.
Events: ``auth_failed``, ``permission_denied``, ``key_created``, ``key_revoked``,
``account_resumed`` (an admin resumed a paused channel account), ``account_token_reloaded``
(a channel account's token replaced by a settings reload).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa

from chat4all.adapters.storage.schema import audit_log
from chat4all.adapters.storage.sql import SqlStore

__all__ = ["AuditLog", "AuditEntry", "GENESIS", "audit_log"]

GENESIS: Final = "0" * 64
_CHAIN_LOCK: Final = 0x0C4B
"""PostgreSQL advisory lock that serialises appends of every process (each reads the last hash)."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: float
    event: str
    tenant: str | None
    actor: str | None
    detail: str
    hash: str


def _digest(
    prev: str, at: float, event: str, tenant: str | None, actor: str | None, detail: str
) -> str:
    body = json.dumps([prev, repr(at), event, tenant, actor, detail], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


class AuditLog:
    def __init__(self, store: SqlStore) -> None:
        self._engine = store.engine
        self._store = store
        self._lock = asyncio.Lock()
        """Appends in this process, one at a time: each reads the hash the previous wrote (on
        PostgreSQL an advisory lock does the same across processes)."""

    async def append(self, event: str, tenant: str | None, actor: str | None, detail: str) -> None:
        at = time.time()
        async with self._lock, self._store.transaction() as conn:
            # and one at a time across processes: PostgreSQL's advisory lock; on SQLite a
            # write that changes nothing takes the database's write lock before the read
            if conn.dialect.name == "postgresql":
                await conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:space, 0)"), {"space": _CHAIN_LOCK}
                )
            else:
                await conn.execute(audit_log.update().where(sa.false()).values(id=audit_log.c.id))
            prev = (
                await conn.execute(
                    sa.select(audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)
                )
            ).scalar() or GENESIS
            await conn.execute(
                audit_log.insert().values(
                    at=at,
                    event=event,
                    tenant=tenant,
                    actor=actor,
                    detail=detail[:1000],
                    prev_hash=prev,
                    hash=_digest(prev, at, event, tenant, actor, detail[:1000]),
                )
            )

    async def entries(self, limit: int = 100) -> list[AuditEntry]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
                )
            ).all()
        return [AuditEntry(r.id, r.at, r.event, r.tenant, r.actor, r.detail, r.hash) for r in rows]

    async def verify(self) -> tuple[int, int | None]:
        """``(entries checked, id of the first broken entry or None)``."""
        prev = GENESIS
        checked = 0
        async with self._engine.connect() as conn:
            result = await conn.stream(sa.select(audit_log).order_by(audit_log.c.id))
            async for row in result:
                expected = _digest(prev, row.at, row.event, row.tenant, row.actor, row.detail)
                if row.prev_hash != prev or row.hash != expected:
                    return checked, int(row.id)
                prev = row.hash
                checked += 1
        return checked, None
