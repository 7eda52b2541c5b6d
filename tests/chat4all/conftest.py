from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from chat4all.adapters.storage.sql import SqlStore, sqlite_url
from chat4all.bootstrap import Hub, Injected, running_hub
from chat4all.config import load_settings
from chat4all.registry import Registry
from tests.postgres import fresh_database
from tests.s3 import client, fresh_bucket, moto_server

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client


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


@contextlib.asynccontextmanager
async def hub_running(
    data_dir: Path,
    stop: asyncio.Event | None = None,
    overrides: Injected | None = None,
    channels: Registry | None = None,
    **settings: Any,
) -> AsyncIterator[Hub]:
    """A whole hub as ``chat4all serve`` runs it (SQLite in ``data_dir``, the Bot API
    simulator, both APIs on free loopback ports), until the block ends. ``settings``: more
    ``CHAT4ALL_*`` settings by name (``RATE_PER_KEY=30``); ``overrides``: fakes for
    :func:`chat4all.bootstrap.build_hub` (a tracer, connectors, a failing worker ...);
    ``channels``: the channel plugins (default: the installed ones).
    Webhooks may go to loopback (the tests' receivers) unless ``WEBHOOK_ALLOW_PRIVATE=False``."""
    config = load_settings(
        None,
        channels,
        **{
            "DATA_DIR": data_dir,
            "PORT": 0,
            "SIMULATOR_PORT": 0,
            "GRPC_PORT": 0,
            "WEBHOOK_ALLOW_PRIVATE": True,
            **settings,
        },
    )
    async with running_hub(config, stop or asyncio.Event(), **(overrides or {})) as hub:
        yield hub


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """The default test hub (a test module with other settings defines its own with
    :func:`hub_running`)."""
    async with hub_running(tmp_path) as running:
        yield running


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of an S3-compatible server (moto's) shared by the session (tests/s3.py)."""
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3(s3_endpoint: str) -> S3Client:
    """The tests' own client of it, to look at what the hub stored."""
    return client(s3_endpoint)


@pytest.fixture
def bucket(s3: S3Client) -> str:
    """A new empty bucket for one test."""
    return fresh_bucket(s3)
