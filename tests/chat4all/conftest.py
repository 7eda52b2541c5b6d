from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from chat4all.adapters.storage.sql import SqlStore, sqlite_url
from chat4all.bootstrap import ROLES, Hub, Injected, running_hub
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
    roles: Iterable[str] = ROLES,
    **settings: Any,
) -> AsyncIterator[Hub]:
    """A whole hub as ``chat4all serve`` runs it (SQLite in ``data_dir``, the Bot API
    simulator, both APIs on free loopback ports), until the block ends. ``settings``: more
    ``CHAT4ALL_*`` settings by name (``RATE_PER_KEY=30``); ``overrides``: fakes for
    :func:`chat4all.bootstrap.build_hub` (a tracer, connectors, a failing worker ...);
    ``channels``: the channel plugins (default: the installed ones); ``roles``: the roles it
    runs (default: ``serve``'s, all of them).
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
    async with running_hub(config, stop or asyncio.Event(), roles, **(overrides or {})) as hub:
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


Events = list[tuple[str, dict[str, Any]]]
"""Server-sent events as read: each one's ``event`` type and its ``data``."""


@contextlib.asynccontextmanager
async def live_events(
    hub: Hub, client: httpx.AsyncClient, tenant: str = "default"
) -> AsyncIterator[Events]:
    """``GET /v1/events`` read through ``client`` (a key of ``tenant``) for the block: yields
    the list it appends each event to, once the hub has the stream subscribed (so every event
    published from then on is in it). The stream is closed at the end of the block, and the
    block ends once the hub has let go of it (a hub shared by several tests sees no leftover)."""
    seen: Events = []
    before = hub.bus.subscribers(tenant)

    async def listen() -> None:
        async with client.stream("GET", "/v1/events") as stream:
            assert stream.status_code == 200, stream.status_code
            assert stream.headers["content-type"].startswith("text/event-stream")
            kind = ""
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    seen.append((kind, json.loads(line[6:])))

    listener = asyncio.create_task(listen())
    try:
        while hub.bus.subscribers(tenant) <= before:
            if listener.done():
                listener.result()  # its failure, if it failed
                raise AssertionError("the event stream ended before it was subscribed")
            await asyncio.sleep(0.01)
        yield seen
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        deadline = time.monotonic() + 5
        while hub.bus.subscribers(tenant) > before and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
