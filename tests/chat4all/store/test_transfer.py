"""Copying a hub's database (:func:`chat4all.adapters.storage.transfer.copy_database`): in
batches, and all or nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from chat4all.adapters.storage.schema import api_keys, messages
from chat4all.adapters.storage.sql import SqlStore, sqlite_url
from chat4all.adapters.storage.transfer import CopyFailed, copy_database
from chat4all.domain.model import Content
from chat4all.ports import SendRequest


async def _count(store: SqlStore, table: sa.Table) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar())


async def test_rows_are_copied_in_batches_and_a_failed_copy_leaves_the_target_empty(
    tmp_path: Path, postgres_url: str
) -> None:
    source = await SqlStore.open(sqlite_url(tmp_path / "chat4all.db"))
    target = await SqlStore.open(postgres_url)
    try:
        for n in range(5):
            request = SendRequest("telegram", "bot", str(n % 2), Content(text=f"m{n}"))
            await source.accept("t1", request, None, time.time())
        # SQLite keeps a value longer than its column; PostgreSQL refuses it, mid-copy
        async with source.db.transaction() as conn:
            await conn.execute(
                api_keys.insert().values(
                    id="k" * 40, tenant="t1", role="admin", hash="h", name="", created_at=1.0
                )
            )
        with pytest.raises(CopyFailed, match="a row of api_keys"):
            await copy_database(source.db, target.db, batch=2)
        assert await _count(target, messages) == 0  # one transaction: nothing stays

        async with source.db.transaction() as conn:
            await conn.execute(api_keys.update().values(id="k1"))
        seen: list[tuple[str, int, bool]] = []
        copied = await copy_database(
            source.db, target.db, batch=2, progress=lambda *p: seen.append(p)
        )
        assert copied.rows["messages"] == 5
        assert [p for p in seen if p[0] == "messages"] == [
            ("messages", 2, False),
            ("messages", 4, False),
            ("messages", 5, False),
            ("messages", 5, True),
        ]
        assert await _count(target, messages) == 5
    finally:
        await source.close()
        await target.close()
