"""The idempotency cache contract, over the embedded default (no cache: it knows nothing) and
Redis (keys under a prefix of the test's own); then the cache in front of the store
(:class:`CachedReplays`): a replay of a completed key is the store's own answer without asking
the store, another body is refused as the store refuses it, a key the cache does not know (or
Redis away) is the store's to answer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from chat4all.adapters.redis_state import RedisIdempotencyCache, redis_client
from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import Content, Conversation, Message
from chat4all.errors import IdempotencyConflict
from chat4all.ports import NO_ORIGIN, Accepted, Origin, Page, SendRequest
from chat4all.service_layer.idempotency import (
    CachedReplays,
    Completed,
    IdempotencyCache,
    NoIdempotencyCache,
)
from tests.services import free_port

HOUR = 3600.0


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    opened = redis_client(redis_url, timeout=5.0)
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
async def prefix(client: redis.Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own, its keys deleted after."""
    mine = f"test:{uuid.uuid4().hex}:"
    yield mine
    keys = [k async for k in client.scan_iter(match=f"{mine}*")]
    if keys:
        await client.delete(*keys)


@pytest.fixture(params=["none", "redis"])
def cache(request: pytest.FixtureRequest) -> IdempotencyCache:
    if request.param == "none":
        return NoIdempotencyCache()
    return RedisIdempotencyCache(
        request.getfixturevalue("client"), request.getfixturevalue("prefix")
    )


def remembers(cache: IdempotencyCache) -> bool:
    return not isinstance(cache, NoIdempotencyCache)


def hello(text: str = "hello") -> SendRequest:
    return SendRequest("telegram", "bot", "42", Content(text=text))


@pytest.fixture
async def first(store: SqlStore) -> Message:
    """A message as a first answer (accepted by the store)."""
    return (await store.accept("t1", hello(), ("k0", "h0"), time.time())).message


async def test_an_unknown_key_is_not_known(cache: IdempotencyCache) -> None:
    assert await cache.get("t1", "never-put") is None


async def test_a_completed_key_is_given_back_as_put(
    cache: IdempotencyCache, first: Message
) -> None:
    await cache.put("t1", "order-1", Completed("h1", first), HOUR)
    expected = Completed("h1", first) if remembers(cache) else None
    assert await cache.get("t1", "order-1") == expected


async def test_keys_are_per_tenant(cache: IdempotencyCache, first: Message) -> None:
    await cache.put("a:b", "c", Completed("h1", first), HOUR)
    assert await cache.get("t2", "c") is None
    assert await cache.get("a", "b:c") is None  # no tenant and key make another pair's name


async def test_nothing_is_kept_without_time_left(cache: IdempotencyCache, first: Message) -> None:
    await cache.put("t1", "old", Completed("h1", first), 0.0)
    await cache.put("t1", "older", Completed("h1", first), -5.0)
    assert await cache.get("t1", "old") is None
    assert await cache.get("t1", "older") is None


async def test_a_key_is_forgotten_after_its_time(cache: IdempotencyCache, first: Message) -> None:
    await cache.put("t1", "brief", Completed("h1", first), 0.2)
    deadline = time.monotonic() + 5.0
    while await cache.get("t1", "brief") is not None:
        assert time.monotonic() < deadline, "never forgotten"
        await asyncio.sleep(0.05)


class Counted:
    """The store, its accepts counted."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.accepts = 0

    async def accept(
        self,
        tenant: str,
        request: SendRequest,
        idempotency: tuple[str, str] | None,
        now: float,
        origin: Origin = NO_ORIGIN,
    ) -> Accepted:
        self.accepts += 1
        return await self.store.accept(tenant, request, idempotency, now, origin)

    async def get(self, tenant: str, message_id: str) -> Message:
        return await self.store.get(tenant, message_id)

    async def conversations(
        self, tenant: str, cursor: str | None, limit: int
    ) -> Page[Conversation]:
        return await self.store.conversations(tenant, cursor, limit)

    async def messages(
        self, tenant: str, conversation_id: str, cursor: str | None, limit: int
    ) -> Page[Message]:
        return await self.store.messages(tenant, conversation_id, cursor, limit)


async def test_a_replay_is_the_stores_first_answer_without_the_store(
    store: SqlStore, client: redis.Redis, prefix: str
) -> None:
    counted = Counted(store)
    replays = CachedReplays(counted, RedisIdempotencyCache(client, prefix), 24 * HOUR)
    now = time.time()
    accepted = await replays.accept("t1", hello(), ("order-1", "h1"), now)
    assert not accepted.replayed
    again = await replays.accept("t1", hello(), ("order-1", "h1"), now + 60)
    assert counted.accepts == 1  # the cache answered
    from_store = await store.accept("t1", hello(), ("order-1", "h1"), now + 60)
    assert again == from_store == Accepted(accepted.message, replayed=True)
    # the key lives as long as the store remembers it: a day after the first answer
    ttl = await client.pttl(f"{prefix}idem:2:t1:order-1")
    assert 24 * HOUR * 1000 - 5_000 < ttl <= 24 * HOUR * 1000


async def test_another_body_is_refused_as_the_store_refuses_it(
    store: SqlStore, client: redis.Redis, prefix: str
) -> None:
    counted = Counted(store)
    replays = CachedReplays(counted, RedisIdempotencyCache(client, prefix), 24 * HOUR)
    await replays.accept("t1", hello(), ("order-1", "h1"), time.time())
    with pytest.raises(IdempotencyConflict) as cached:
        await replays.accept("t1", hello("other"), ("order-1", "h2"), time.time())
    assert counted.accepts == 1
    with pytest.raises(IdempotencyConflict) as stored:
        await store.accept("t1", hello("other"), ("order-1", "h2"), time.time())
    assert str(cached.value) == str(stored.value)


async def test_a_key_the_cache_does_not_know_is_the_stores_and_then_cached(
    store: SqlStore, client: redis.Redis, prefix: str
) -> None:
    now = time.time()
    first = await store.accept("t1", hello(), ("order-1", "h1"), now)  # before the cache
    counted = Counted(store)
    cache = RedisIdempotencyCache(client, prefix)
    replays = CachedReplays(counted, cache, 24 * HOUR)
    again = await replays.accept("t1", hello(), ("order-1", "h1"), now + 10)
    assert counted.accepts == 1
    assert again == Accepted(first.message, replayed=True)
    assert await cache.get("t1", "order-1") == Completed("h1", first.message)
    # cached until the day after the first answer, not after the replay
    ttl = await client.pttl(f"{prefix}idem:2:t1:order-1")
    assert ttl <= (24 * HOUR - 10) * 1000


async def test_with_redis_away_the_store_answers_every_replay(store: SqlStore) -> None:
    away = redis_client(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    missed: list[None] = []
    counted = Counted(store)
    cache = RedisIdempotencyCache(away, "x:", unavailable=lambda: missed.append(None), pause=0)
    replays = CachedReplays(counted, cache, 24 * HOUR)
    try:
        first = await replays.accept("t1", hello(), ("order-1", "h1"), time.time())
        again = await replays.accept("t1", hello(), ("order-1", "h1"), time.time())
        with pytest.raises(IdempotencyConflict):
            await replays.accept("t1", hello("other"), ("order-1", "h2"), time.time())
    finally:
        await away.aclose()
    assert again == Accepted(first.message, replayed=True)
    assert counted.accepts == 3
    assert len(missed) >= 3  # each lookup counted
