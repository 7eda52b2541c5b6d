"""The store on a real PostgreSQL (the machine's, 127.0.0.1:5432): migrations, concurrent first
requests with one Idempotency-Key, and one bad change in a group commit failing alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from chat4all.adapters.storage import migrate
from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import Content
from chat4all.errors import IdempotencyInFlight
from chat4all.ports import SendRequest


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[SqlStore]:
    opened = await SqlStore.open(postgres_url)
    try:
        yield opened
    finally:
        await opened.close()


def req(text: str, recipient: str = "42") -> SendRequest:
    return SendRequest("telegram", "bot", recipient, Content(text=text))


async def test_migrations_reach_the_newest_revision(store: SqlStore) -> None:
    assert store.migrated == (None, migrate.revisions()[-1])


async def test_concurrent_first_requests_with_one_key_make_one_message(store: SqlStore) -> None:
    outcomes = await asyncio.gather(
        *(store.accept("t1", req("once"), ("key-1", "hash"), 1.0) for _ in range(8)),
        return_exceptions=True,
    )
    unexpected = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(o, IdempotencyInFlight) for o in unexpected), unexpected
    made = {o.message.id for o in outcomes if not isinstance(o, BaseException)}
    assert len(made) == 1
    again = await store.accept("t1", req("once"), ("key-1", "hash"), 2.0)
    assert again.replayed and again.message.id in made


async def test_one_bad_change_fails_alone_in_its_group_commit(store: SqlStore) -> None:
    good = [store.accept("t1", req(f"good {n}", recipient=f"r{n}"), None, 1.0) for n in range(6)]
    bad = store.accept("t2", req("bad", recipient="nul\x00byte"), None, 1.0)  # PostgreSQL refuses
    outcomes = await asyncio.gather(*good, bad, return_exceptions=True)
    assert isinstance(outcomes[-1], sa.exc.DBAPIError)
    accepted = [o for o in outcomes[:-1] if not isinstance(o, BaseException)]
    assert len(accepted) == 6, outcomes
    assert await store.depth() == 6


async def test_inbound_and_outbound_open_a_new_conversation_together(store: SqlStore) -> None:
    inbound = store.record_inbound("t1", req("hi from them", "new"), "u1", "pm1", 1.0)
    outbound = store.accept("t1", req("hi from us", "new"), None, 1.0)
    received, sent = await asyncio.gather(inbound, outbound)
    assert received is not None
    assert received.conversation_id == sent.message.conversation_id
    assert sorted([received.seq, sent.message.seq]) == [1, 2]
