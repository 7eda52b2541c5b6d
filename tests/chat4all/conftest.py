from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat4all.adapters.storage.sql import SqlStore, sqlite_url
from tests.postgres import fresh_database


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = await SqlStore.open(sqlite_url(tmp_path / "chat4all.db"))
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def postgres_url(postgres_server: str) -> AsyncIterator[str]:
    """A fresh database of its own for one test, dropped afterwards."""
    async with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database, once per engine the store supports: the store contract
    runs every test over each."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "chat4all.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def any_store(store_url: str) -> AsyncIterator[SqlStore]:
    """The store on SQLite, then on PostgreSQL (see :func:`store_url`)."""
    opened = await SqlStore.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()
