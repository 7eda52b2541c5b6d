from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat4all.adapters.storage.keys import KeyRing  # noqa: F401 - registers the keys table
from chat4all.adapters.storage.sql import SqlStore, sqlite_url


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = await SqlStore.open(sqlite_url(tmp_path / "chat4all.db"))
    try:
        yield opened
    finally:
        await opened.close()
