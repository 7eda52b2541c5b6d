"""``CHAT4ALL_DATABASE_READ_URL``: the read-only queries (a message, conversations and their
messages) go to the read engine and the writes to the primary. Proved with a "replica" that is
another database holding a marker message the primary does not have; then a whole hub with the
same PostgreSQL database given as both URLs; and a replica that cannot be reached stops the
start, naming the setting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from chat4all.adapters.storage.sql import SqlStore
from chat4all.bootstrap import SIMULATOR_ACCOUNT
from chat4all.domain.model import Content
from chat4all.errors import NotFound, StoreUnavailable
from chat4all.ports import SendRequest
from tests.chat4all.conftest import hub_running
from tests.postgres import fresh_database


@pytest.fixture
async def replica_url(postgres_server: str) -> AsyncIterator[str]:
    """A second database: a stand-in for a replica that differs from the primary."""
    async with fresh_database(postgres_server) as url:
        yield url


def req(text: str) -> SendRequest:
    return SendRequest("telegram", "bot", "42", Content(text=text))


async def test_reads_go_to_the_read_engine_and_writes_to_the_primary(
    postgres_url: str, replica_url: str
) -> None:
    marker_store = await SqlStore.open(replica_url)
    try:
        marker = (await marker_store.accept("t1", req("only on the replica"), None, 100.0)).message
    finally:
        await marker_store.close()
    store = await SqlStore.open(postgres_url, read_url=replica_url)
    try:
        assert store.db.read_engine is not store.db.engine
        found = await store.get("t1", marker.id)
        assert found.content.text == "only on the replica"
        [conversation] = (await store.conversations("t1", None, 10)).items
        listed = await store.messages("t1", conversation.id, None, 10)
        assert [m.id for m in listed.items] == [marker.id]
        assert (await store.conversation("t1", conversation.id))[0].id == conversation.id
        written = (await store.accept("t1", req("to the primary"), None, 101.0)).message
        with pytest.raises(NotFound):  # written to the primary, not to the "replica"
            await store.get("t1", written.id)
        assert await store.depth() == 1  # the workers' queries stay on the primary
        assert await store.ready()
    finally:
        await store.close()
    primary = await SqlStore.open(postgres_url)
    try:
        assert (await primary.get("t1", written.id)).content.text == "to the primary"
        with pytest.raises(NotFound):
            await primary.get("t1", marker.id)
    finally:
        await primary.close()


async def test_a_hub_reads_through_the_read_url(postgres_url: str, tmp_path: Path) -> None:
    async with hub_running(
        tmp_path, DATABASE_URL=postgres_url, DATABASE_READ_URL=postgres_url
    ) as hub:
        assert hub.store.db.read_engine is not hub.store.db.engine
        auth = {"Authorization": f"Bearer {hub.admin_key}"}
        async with httpx.AsyncClient(base_url=hub.url, headers=auth, timeout=30) as client:
            sent = await client.post(
                "/v1/messages",
                json={
                    "channel": "telegram",
                    "account": SIMULATOR_ACCOUNT,
                    "recipient": "42",
                    "content": {"text": "hello"},
                },
            )
            assert sent.status_code == 202, sent.text
            read = await client.get(f"/v1/messages/{sent.json()['id']}")
            assert read.status_code == 200
            assert read.json()["content"]["text"] == "hello"
            listed = (await client.get("/v1/conversations")).json()
            assert len(listed["items"]) == 1


async def test_a_replica_that_cannot_be_reached_stops_the_start(postgres_url: str) -> None:
    with pytest.raises(StoreUnavailable) as refused:
        await SqlStore.open(
            postgres_url, read_url="postgresql+asyncpg://reader:s3cr3t-pw@127.0.0.1:1/hub"
        )
    assert "CHAT4ALL_DATABASE_READ_URL" in str(refused.value)
    assert "s3cr3t-pw" not in str(refused.value)
