"""A PostgreSQL server for the tests: the one ``CHAT4ALL_TEST_POSTGRES`` names, else the
machine's on 127.0.0.1:5432; where nothing answers there, the ``postgres_server`` fixture starts
a private one (tests/services.py). Each test gets a database of its own on it (created,
dropped)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

__all__ = ["DEFAULT_SERVER", "server_url", "fresh_database"]

DEFAULT_SERVER: Final = "postgresql+asyncpg://postgres@127.0.0.1:5432"


def server_url() -> str:
    """The server's URL without a database (``postgresql+asyncpg://user@host:port``)."""
    return os.environ.get("CHAT4ALL_TEST_POSTGRES", DEFAULT_SERVER)


@asynccontextmanager
async def fresh_database(server: str) -> AsyncIterator[str]:
    """A new empty database on ``server``; its URL, dropped afterwards."""
    name = f"chat4all_test_{secrets.token_hex(4)}"
    admin = create_async_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield f"{server}/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
