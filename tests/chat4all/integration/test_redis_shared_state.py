"""Acceptance: with ``CHAT4ALL_REDIS_URL`` the rate limits and the idempotent replays are the
hub's, not each API process's. Two hubs (each its own REST and gRPC servers, its own Redis
client) on one PostgreSQL database and one Redis: one key gets its limit in total, then 429
with Retry-After from either; a send made through one is replayed by the other from Redis.
Redis being away (nothing listening, or a private server stopped and started again) takes no
request down: each process then limits on its own, and shares again once Redis is back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from chat4all.adapters.redis_state import redis_client
from chat4all.bootstrap import SIMULATOR_ACCOUNT, Hub
from chat4all.domain.access import Role
from tests.chat4all.conftest import hub_running
from tests.services import Redis, free_port

pytestmark = pytest.mark.timeout(120)

LIMIT = 20
"""Requests a minute per key: one more each 3 s."""


def body(text: str) -> dict[str, object]:
    return {
        "channel": "telegram",
        "account": SIMULATOR_ACCOUNT,
        "recipient": "42",
        "content": {"text": text},
    }


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own, its keys deleted after."""
    mine = f"test:{uuid.uuid4().hex}:"
    yield mine
    client = redis_client(redis_url, timeout=5.0)
    try:
        keys = [k async for k in client.scan_iter(match=f"{mine}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def two_hubs(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[Hub, Hub]]:
    async with (
        hub_running(tmp_path / "a", MEDIA_DIR=tmp_path / "media", **settings) as a,
        hub_running(tmp_path / "b", MEDIA_DIR=tmp_path / "media", **settings) as b,
    ):
        yield a, b


async def test_one_key_gets_its_limit_across_two_api_processes(
    tmp_path: Path, postgres_url: str, redis_url: str, prefix: str
) -> None:
    shared = {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "REDIS_TIMEOUT": 5,  # a busy test box is no outage
    }
    async with two_hubs(tmp_path, RATE_PER_KEY=LIMIT, **shared) as (a, b):
        key, _ = await a.keys.create("default", Role.SENDER)
        auth = {"Authorization": f"Bearer {key}"}
        answered: dict[str, list[httpx.Response]] = {"a": [], "b": []}
        started = time.monotonic()
        async with (
            httpx.AsyncClient(base_url=a.url, headers=auth) as to_a,
            httpx.AsyncClient(base_url=b.url, headers=auth) as to_b,
        ):
            for n in range(2 * LIMIT):
                name, client = ("a", to_a) if n % 2 == 0 else ("b", to_b)
                answered[name].append(await client.post("/v1/messages", json=body(f"m{n}")))
        elapsed = time.monotonic() - started
    codes = [r.status_code for r in answered["a"] + answered["b"]]
    accepted = codes.count(202)
    print(f"{accepted} of {len(codes)} accepted across two processes in {elapsed:.1f}s")
    # each process alone would grant LIMIT: together they grant LIMIT (and one more each 3 s
    # the sends took)
    assert LIMIT <= accepted <= LIMIT + int(elapsed / 3)
    assert codes.count(429) == len(codes) - accepted
    for name in ("a", "b"):
        limited = [r for r in answered[name] if r.status_code == 429]
        assert limited, f"{name} never refused"
        assert limited[-1].json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited[-1].headers["Retry-After"]) <= 3


async def test_a_send_through_one_process_is_replayed_by_the_other_from_redis(
    tmp_path: Path, postgres_url: str, redis_url: str, prefix: str
) -> None:
    shared = {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "REDIS_TIMEOUT": 5,  # a busy test box is no outage
    }
    async with two_hubs(tmp_path, **shared) as (a, b):
        auth = {"Authorization": f"Bearer {a.admin_key}", "Idempotency-Key": "order-1"}
        async with (
            httpx.AsyncClient(base_url=a.url, headers=auth) as to_a,
            httpx.AsyncClient(base_url=b.url, headers=auth) as to_b,
        ):
            first = await to_a.post("/v1/messages", json=body("once"))
            cached = redis.Redis.from_url(redis_url)
            try:
                assert await cached.exists(f"{prefix}idem:7:default:order-1")
            finally:
                await cached.aclose()
            again = await to_b.post("/v1/messages", json=body("once"))
            other = await to_b.post("/v1/messages", json=body("twice"))
    # both hubs closed their clients (named after the prefix) on the way out
    peek = redis_client(redis_url, timeout=5.0)
    try:
        deadline = time.monotonic() + 10
        while [c for c in await peek.client_list() if c["name"] == prefix]:
            assert time.monotonic() < deadline, "a hub left its Redis connections open"
            await asyncio.sleep(0.05)
    finally:
        await peek.aclose()
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_conflict"


async def test_with_nothing_at_the_redis_url_the_api_answers_and_limits_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "chat4all.adapters.redis_state")
    away = f"redis://127.0.0.1:{free_port()}/0"
    async with hub_running(tmp_path, REDIS_URL=away, RATE_PER_KEY=3) as hub:
        auth = {"Authorization": f"Bearer {hub.admin_key}"}
        async with httpx.AsyncClient(base_url=hub.url, headers=auth) as client:
            sent = [
                await client.post(
                    "/v1/messages", json=body(f"m{n}"), headers={"Idempotency-Key": f"k{n}"}
                )
                for n in range(3)
            ]
            replayed = await client.post(
                "/v1/messages", json=body("m0"), headers={"Idempotency-Key": "k0"}
            )
            scrape = (await client.get("/metrics")).text
    assert [r.status_code for r in sent] == [202, 202, 202]
    assert replayed.status_code == 429  # this process's own limit, while Redis is away
    # every request decided without Redis is counted: the three sends and the replay
    assert counter(scrape, "chat4all_rate_limiter_unavailable_total") == 4
    assert counter(scrape, "chat4all_idempotency_cache_unavailable_total") >= 3
    warned = [r.getMessage() for r in caplog.records if "rate limits" in r.getMessage()]
    assert len(warned) == 1, warned  # once per outage, not once per request
    assert "each process keeps them on its own" in warned[0]


def counter(scrape: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", scrape, re.MULTILINE)
    assert found is not None, f"no {name} in the metrics"
    return float(found.group(1))


async def test_a_redis_stopped_restarted_or_frozen_takes_no_request_down(tmp_path: Path) -> None:
    with Redis.from_environment().server() as server:  # a private one: never the shared one
        async with hub_running(tmp_path, REDIS_URL=server.url, RATE_PER_KEY=1000) as hub:
            key, info = await hub.keys.create("default", Role.SENDER)
            counted = f"chat4all:rate:key:{info.id}"
            auth = {"Authorization": f"Bearer {key}"}
            peek = redis_client(server.url, timeout=5.0)
            async with httpx.AsyncClient(base_url=hub.url, headers=auth) as client:

                async def send(n: int) -> float:
                    """Seconds the send took (202, whatever Redis does)."""
                    started = time.monotonic()
                    answer = await client.post("/v1/messages", json=body(f"m{n}"))
                    assert answer.status_code == 202, answer.text
                    return time.monotonic() - started

                deadline = time.monotonic() + 20
                n = 0
                while not await _exists(peek, counted):  # the limits are in Redis (a send
                    # the hub's short Redis timeout ran out for on a busy machine counts alone)
                    assert time.monotonic() < deadline, "the limits never reached Redis"
                    await send(n)
                    n += 1
                await asyncio.to_thread(server.stop)
                for n in range(1000, 1005):  # Redis is down: answered all the same
                    await send(n)
                await asyncio.to_thread(server.start)  # back, empty
                deadline = time.monotonic() + 20
                n = 6
                while not await _exists(peek, counted):  # the limits are shared again
                    assert time.monotonic() < deadline, "never back on Redis"
                    await send(n)
                    n += 1
                    await asyncio.sleep(0.05)
                await asyncio.to_thread(server.freeze)
                try:  # nothing answers, nothing refuses: each send waits one timeout at most
                    took = [await send(100 + n) for n in range(5)]
                finally:
                    await asyncio.to_thread(server.thaw)
                await peek.aclose()
    print(f"sends while Redis was frozen took {', '.join(f'{t:.2f}' for t in took)} s")
    assert max(took) < 5.0


async def _exists(client: redis.Redis, key: str) -> bool:
    """Whether ``key`` is there; ``False`` while the server does not answer yet."""
    try:
        return bool(await client.exists(key))
    except (redis.ConnectionError, redis.TimeoutError):
        return False
