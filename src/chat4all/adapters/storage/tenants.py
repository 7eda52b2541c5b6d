"""Each tenant's settings, one row per tenant that an admin changed (the port
:class:`~chat4all.ports.TenantSettingsStore`)."""

from __future__ import annotations

import sqlalchemy as sa

from chat4all.adapters.storage.engine import upsert
from chat4all.adapters.storage.schema import tenant_settings
from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import Oversize

__all__ = ["SqlTenantSettings"]


class SqlTenantSettings:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def oversize(self, tenant: str) -> Oversize | None:
        query = sa.select(tenant_settings.c.oversize).where(tenant_settings.c.tenant == tenant)
        async with self._store.engine.connect() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return Oversize(value) if value is not None else None

    async def set_oversize(self, tenant: str, policy: Oversize, now: float) -> None:
        async with self._store.transaction() as conn:
            statement = upsert(conn, tenant_settings).values(
                tenant=tenant, oversize=policy.value, updated_at=now
            )
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[tenant_settings.c.tenant],
                    set_={"oversize": policy.value, "updated_at": now},
                )
            )
