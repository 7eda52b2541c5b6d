"""API keys: shown once, stored as argon2id hashes, each bound to one tenant and one role.

A key reads ``c4a_<id>_<secret>``; ``id`` finds the row, the secret is verified against its
argon2id hash. Verifying costs tens of milliseconds by design, so a verified key is remembered
(by its SHA-256, never in the clear) for ``cache_seconds``; a revoked key stops working within
that time.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from chat4all.adapters.storage.schema import api_keys
from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.access import Principal, Role, format_key, parse_key
from chat4all.errors import AuthError

# Role is re-exported while callers outside the API move to chat4all.domain.access.
__all__ = ["KeyRing", "KeyInfo", "Role"]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    tenant: str
    role: Role
    name: str
    created_at: float
    revoked: bool


class KeyRing:
    def __init__(self, store: SqlStore, cache_seconds: float = 60.0) -> None:
        self._engine = store.engine
        self._store = store
        self._hasher = PasswordHasher()  # argon2id with the library's current defaults
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._verifying: dict[str, asyncio.Future[Principal]] = {}
        self._cache_seconds = cache_seconds

    async def create(self, tenant: str, role: Role, name: str = "") -> tuple[str, KeyInfo]:
        """A new key; the returned secret is shown once and never stored."""
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = time.time()
        hashed = await asyncio.to_thread(self._hasher.hash, secret)
        async with self._store.transaction() as conn:
            await conn.execute(
                api_keys.insert().values(
                    id=key_id,
                    tenant=tenant,
                    role=role.value,
                    hash=hashed,
                    name=name,
                    created_at=now,
                )
            )
        return format_key(key_id, secret), KeyInfo(key_id, tenant, role, name, now, False)

    async def list(self, tenant: str | None = None) -> list[KeyInfo]:
        query = sa.select(api_keys).order_by(api_keys.c.created_at)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            KeyInfo(r.id, r.tenant, Role(r.role), r.name, r.created_at, r.revoked_at is not None)
            for r in rows
        ]

    async def revoke(self, key_id: str) -> bool:
        async with self._store.transaction() as conn:
            done = await conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        self._cache.clear()
        return bool(done.rowcount)

    async def authenticate(self, presented: str | None) -> Principal:
        key = parse_key(presented)
        assert presented is not None  # parse_key refuses a missing key
        digest = hashlib.sha256(presented.encode()).hexdigest()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        # One verification per key at a time: a burst of requests with a new key waits for the
        # first one instead of each paying for argon2.
        pending = self._verifying.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._verify(key.key_id, key.secret, digest))
            self._verifying[digest] = pending
            pending.add_done_callback(lambda _f: self._verifying.pop(digest, None))
        return await asyncio.shield(pending)

    async def _verify(self, key_id: str, secret: str, digest: str) -> Principal:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).first()
        if row is None or row.revoked_at is not None:
            raise AuthError("unknown or revoked API key")
        try:
            # argon2 costs tens of milliseconds of CPU by design: off the event loop.
            await asyncio.to_thread(self._hasher.verify, row.hash, secret)
        except (VerificationError, InvalidHashError):
            raise AuthError("unknown or revoked API key") from None
        principal = Principal(row.id, row.tenant, Role(row.role))
        self._cache[digest] = (principal, time.monotonic() + self._cache_seconds)
        return principal
