"""PostgreSQL's pool and timeouts (``CHAT4ALL_DATABASE_*``): a statement past the statement
timeout, a frozen server, a pool with no free connection are each :class:`StoreUnavailable`
(the API's 503 with Retry-After), never a hang or a 500; a migration runs without the statement
timeout. Against the machine's PostgreSQL, and a private one frozen with SIGSTOP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from chat4all.adapters.storage.engine import CLIENT_MARGIN, PostgresLimits
from chat4all.adapters.storage.migrate import MIGRATION_LOCK
from chat4all.adapters.storage.sql import SqlStore
from chat4all.bootstrap import API_ROLES
from chat4all.errors import StoreUnavailable
from chat4all.service_layer.readiness import READY_TIMEOUT, Readiness
from tests.chat4all.conftest import hub_running
from tests.chat4all.integration.test_rest_e2e import body
from tests.postgres import fresh_database, server_url
from tests.services import PostgreSQL, PrivateServer


@pytest.fixture
async def other(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """Another client of the test's database (a DBA's session)."""
    engine = create_async_engine(postgres_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"not {what} within {timeout:g} s"
        await asyncio.sleep(0.05)


async def test_a_statement_past_the_statement_timeout_is_503_with_retry_after(
    tmp_path: Path, postgres_url: str, other: AsyncEngine
) -> None:
    async with hub_running(
        tmp_path, roles=API_ROLES, DATABASE_URL=postgres_url, DATABASE_STATEMENT_TIMEOUT=1
    ) as hub:
        auth = {"Authorization": f"Bearer {hub.admin_key}"}
        async with httpx.AsyncClient(base_url=hub.url, headers=auth, timeout=60) as client:
            assert (await client.post("/v1/messages", json=body("before"))).status_code == 202
            async with other.begin() as dba:  # every insert of a message waits behind it
                await dba.execute(sa.text("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE"))
                started = time.monotonic()
                answer = await client.post("/v1/messages", json=body("while locked"))
                waited = time.monotonic() - started
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"] == "1"
            error = answer.json()["error"]
            assert error["code"] == "unavailable"
            assert "statement timeout" in error["message"]
            assert 1 <= waited < 1 + CLIENT_MARGIN, waited  # the server's cancel, not the client's
            assert (await client.post("/v1/messages", json=body("after"))).status_code == 202


async def test_no_free_connection_within_the_pool_timeout_is_store_unavailable(
    postgres_url: str,
) -> None:
    limits = PostgresLimits(pool_size=1, max_overflow=0, pool_timeout=0.2)
    store = await SqlStore.open(postgres_url, postgres=limits)
    try:
        async with store.db.read() as held:
            await held.execute(sa.text("SELECT 1"))
            with pytest.raises(
                StoreUnavailable, match=r"no free database connection within 0\.2 s"
            ):
                await store.ready()
        assert await store.ready()  # given back: free again
    finally:
        await store.close()


async def test_a_migration_waits_past_the_statement_timeout(
    postgres_url: str, other: AsyncEngine
) -> None:
    """Processes starting together migrate one at a time (an advisory lock); the one that
    waits, here longer than its statement timeout, is not cut off."""
    limits = PostgresLimits(statement_timeout=1)

    async def waited_past_the_timeout() -> bool:
        async with other.connect() as conn:
            found = await conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%pg_advisory_xact_lock%' "
                    "AND now() - query_start > interval '1.5 seconds'"
                )
            )
            return bool(found.scalar())

    async with other.begin() as migrating:  # another process's migration, in progress
        await migrating.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        opening = asyncio.create_task(SqlStore.open(postgres_url, postgres=limits))
        await until(waited_past_the_timeout, "waiting for the migration lock")
        assert not opening.done()
    store = await asyncio.wait_for(opening, 30)
    try:
        assert store.migrated[1] is not None
        async with store.db.read() as conn:  # the hub's own connections have the timeout
            shown = await conn.execute(sa.text("SHOW statement_timeout"))
            assert shown.scalar() == "1s"
    finally:
        await store.close()


@pytest.fixture
def frozen_server() -> Iterator[PrivateServer]:
    """A private PostgreSQL of this test's own (it is frozen), thawed at the end whatever
    happened."""
    with PostgreSQL(server_url()).server() as server:
        try:
            yield server
        finally:
            server.thaw()


async def test_a_frozen_server_is_store_unavailable_within_the_timeouts_then_recovers(
    frozen_server: PrivateServer,
) -> None:
    limits = PostgresLimits(connect_timeout=1, statement_timeout=1, pool_timeout=1)
    async with fresh_database(frozen_server.url) as url:
        store = await SqlStore.open(url, postgres=limits)
        try:
            assert await store.ready()
            frozen_server.freeze()
            try:
                # a pooled connection: the client gives up past the statement timeout
                started = time.monotonic()
                with pytest.raises(StoreUnavailable, match="retry"):
                    await store.ready()
                first = time.monotonic() - started
                # a new connection: past the connect timeout
                started = time.monotonic()
                with pytest.raises(StoreUnavailable, match="retry"):
                    await store.ready()
                second = time.monotonic() - started
            finally:
                frozen_server.thaw()
            # the client's own timeout, then up to 2 s closing the connection in doubt (SQLAlchemy's
            # graceful close), and slack for a busy machine
            assert 1 + CLIENT_MARGIN <= first < 1 + CLIENT_MARGIN + 2 + 3, first
            assert 1 <= second < 1 + 3, second

            async def answers() -> bool:
                try:
                    return await store.ready()
                except StoreUnavailable:
                    return False

            await until(answers, "answering after the thaw")
        finally:
            await store.close()


async def test_the_readiness_check_of_a_frozen_server_answers_within_its_timeout(
    frozen_server: PrivateServer,
) -> None:
    """``/ready``'s database check on a frozen server (the default timeouts: a statement would
    wait 32 s) says so within its 2 s, each time, leaving nothing checked out of the pool."""
    async with fresh_database(frozen_server.url) as url:
        store = await SqlStore.open(url, postgres=PostgresLimits())
        try:

            async def database() -> None:
                await store.ready()

            readiness = Readiness()
            readiness.add("database", database)
            assert (await readiness()).ready
            frozen_server.freeze()
            try:
                for _ in range(2):
                    started = time.monotonic()
                    report = await readiness()
                    took = time.monotonic() - started
                    assert report.reason == f"database: no answer within {READY_TIMEOUT:g} s"
                    assert took < READY_TIMEOUT + 1, took
            finally:
                frozen_server.thaw()

            async def ready_again() -> bool:
                return (await readiness()).ready

            await until(ready_again, "ready after the thaw")
            assert store.db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        finally:
            await store.close()
