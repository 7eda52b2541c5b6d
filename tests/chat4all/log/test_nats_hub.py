"""Hubs with ``CHAT4ALL_NATS_URL`` set, on the real NATS JetStream and PostgreSQL: accepted
messages go relay → stream → the workers that own the partitions → the Telegram simulator,
each delivered once and each conversation's in send order; a worker that stops has its
partitions taken over; a conversation that waits for a retry does not hold up another on its
partition; a relay that died between publishing and marking causes no duplicate."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from chat4all.adapters.channels.telegram import TelegramSimulator
from chat4all.adapters.log.jetstream import JetStreamLog
from chat4all.adapters.storage.partitions import SqlPartitionLeases
from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import Content
from chat4all.ports import Publishable, SendRequest
from chat4all.service_layer.log_dispatch import LogQueue
from tests.chat4all.conftest import hub_running
from tests.chat4all.log.conftest import stream_name

pytestmark = [pytest.mark.timeout(120)]

TOKEN = "555:nats-log-test"


def settings(postgres_url: str, nats_url: str, stream: str, api_url: str, **more: Any) -> Any:
    return {
        "DATABASE_URL": postgres_url,
        "NATS_URL": nats_url,
        "NATS_STREAM": stream,
        "PARTITIONS": 4,
        "PARTITION_LEASE": 2.0,
        "OUTBOX_LEASE": 6.0,
        "NATS_ACK_WAIT": 5.0,
        "NATS_DUPLICATE_WINDOW": 20.0,
        "RATE_PER_KEY": 0,
        "SIMULATORS": False,
        "TELEGRAM_BOTS": {"bot": TOKEN},
        "TELEGRAM_API_URL": api_url,
        **more,
    }


@pytest.fixture
async def telegram() -> AsyncIterator[tuple[TelegramSimulator, str]]:
    simulator = TelegramSimulator(tokens={TOKEN})
    async with simulator.running() as api_url:
        yield simulator, api_url


@pytest.fixture
async def stream(nats_url: str) -> AsyncIterator[str]:
    name = stream_name()
    yield name
    nc = await nats.connect(nats_url)
    with contextlib.suppress(Exception):
        await nc.jetstream().delete_stream(name)
    await nc.close()


def body(text: str, recipient: str) -> dict[str, object]:
    return {
        "channel": "telegram",
        "account": "bot",
        "recipient": recipient,
        "content": {"text": text},
    }


async def until(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not reached in {timeout} s: {what}"
        await asyncio.sleep(0.05)


async def send(hub_url: str, key: str, texts: Sequence[tuple[str, str]]) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=hub_url, headers=auth) as client:
        for recipient, text in texts:
            answer = await client.post("/v1/messages", json=body(text, recipient))
            assert answer.status_code == 202, answer.text


def delivered_once_in_order(simulator: TelegramSimulator, expected: dict[str, list[str]]) -> None:
    counts = Counter(simulator.texts())
    assert [t for t, n in counts.items() if n > 1] == [], "duplicates at the provider"
    for chat, texts in expected.items():
        assert simulator.texts(chat) == texts, chat


def total(expected: dict[str, list[str]]) -> int:
    return sum(len(t) for t in expected.values())


async def test_one_hub_delivers_every_message_once_in_conversation_order(
    tmp_path: Path,
    postgres_url: str,
    nats_url: str,
    stream: str,
    telegram: tuple[TelegramSimulator, str],
) -> None:
    simulator, api_url = telegram
    chats = [str(100 + c) for c in range(6)]
    expected = {chat: [f"{chat}:{n}" for n in range(10)] for chat in chats}
    async with hub_running(tmp_path, **settings(postgres_url, nats_url, stream, api_url)) as hub:
        assert hub.admin_key is not None and hub.message_log is not None
        assert isinstance(hub.dispatcher.outbox, LogQueue)  # claims go through the log
        await send(
            hub.url,
            hub.admin_key,
            [(c, t) for n in range(10) for c in chats for t in [expected[c][n]]],
        )
        await until(lambda: len(simulator.sent) >= total(expected), what="all delivered")
        await until(
            lambda: (
                hub.metrics.relay_published._value.get()
                + hub.metrics.log_followed_messages._value.get()
                >= total(expected)
            )
        )
        await until_async(hub.message_log.lag, 0)  # every entry acknowledged
        async with httpx.AsyncClient(base_url=hub.url) as client:
            scraped = (await client.get("/metrics")).text
        assert "chat4all_log_lag 0.0" in scraped
        assert "chat4all_log_partitions_owned 4.0" in scraped  # alone: every partition
        published = re.search(r"^chat4all_relay_published_total (\S+)$", scraped, re.M)
        followed = re.search(r"^chat4all_log_followed_total (\S+)$", scraped, re.M)
        assert published is not None and followed is not None
        # each message claimed once, through the log or with its conversation's previous
        # delivery; published again when a worker found it no longer claimable (a race with
        # the conversation's previous outcome): the log carries work, not deliveries
        assert float(published.group(1)) + float(followed.group(1)) >= total(expected)
        assert float(published.group(1)) >= len(chats)  # a burst's first goes through the log
    delivered_once_in_order(simulator, expected)
    assert len(simulator.sent) == total(expected)


async def test_a_worker_that_stops_has_its_partitions_taken_over_and_its_messages_delivered(
    tmp_path: Path,
    postgres_url: str,
    nats_url: str,
    stream: str,
    telegram: tuple[TelegramSimulator, str],
) -> None:
    simulator, api_url = telegram
    config = settings(postgres_url, nats_url, stream, api_url)
    chats = [str(200 + c) for c in range(8)]
    expected = {chat: [f"{chat}:{n}" for n in range(10)] for chat in chats}
    plan = [(c, expected[c][n]) for n in range(10) for c in chats]
    async with hub_running(tmp_path / "a", **config) as a:
        assert a.admin_key is not None
        store = a.store
        leases = SqlPartitionLeases(store.db, stream)
        async with contextlib.AsyncExitStack() as b_stack:
            b = await b_stack.enter_async_context(hub_running(tmp_path / "b", **config))
            b_worker = b.dispatcher.worker

            async def split() -> dict[int, str | None]:
                return await leases.holders()

            holders: dict[int, str | None] = {}
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                holders = await split()
                if set(holders.values()) == {a.dispatcher.worker, b_worker} and len(holders) == 4:
                    break
                await asyncio.sleep(0.1)
            assert sorted(Counter(holders.values()).values()) == [2, 2], holders
            assert a.metrics.partitions_owned._value.get() == 2
            await send(b.url, a.admin_key, plan[:40])
            await until(lambda: len(simulator.sent) >= 10, what="some delivered")
        # b stopped (its roles cancelled): a takes every partition and delivers the rest
        await send(a.url, a.admin_key, plan[40:])
        await until(lambda: len(simulator.sent) >= total(expected), what="all delivered")
        assert set((await leases.holders()).values()) == {a.dispatcher.worker}
        assert a.metrics.partitions_owned._value.get() == 4
    delivered_once_in_order(simulator, expected)


async def test_a_conversation_waiting_for_a_retry_does_not_hold_up_its_partition(
    tmp_path: Path,
    postgres_url: str,
    nats_url: str,
    stream: str,
    telegram: tuple[TelegramSimulator, str],
) -> None:
    simulator, api_url = telegram
    config = settings(postgres_url, nats_url, stream, api_url, PARTITIONS=1)
    async with hub_running(tmp_path, **config) as hub:
        assert hub.admin_key is not None
        simulator.throttle(retry_after=6, times=1)
        await send(hub.url, hub.admin_key, [("301", "slow:0"), ("301", "slow:1")])
        await until(
            lambda: hub.metrics.dispatch_total.labels("telegram", "retry")._value.get() >= 1
        )
        waiting_since = time.monotonic()
        others = [("302", f"fast:{n}") for n in range(5)]
        await send(hub.url, hub.admin_key, others)
        await until(lambda: simulator.texts("302") == [t for _, t in others], timeout=5)
        assert time.monotonic() - waiting_since < 5  # well before the retry comes due
        assert simulator.texts("301") == []
        await until(lambda: simulator.texts("301") == ["slow:0", "slow:1"], timeout=20)


async def test_a_relay_that_died_between_publishing_and_marking_causes_no_duplicate(
    tmp_path: Path,
    postgres_url: str,
    nats_url: str,
    stream: str,
    telegram: tuple[TelegramSimulator, str],
) -> None:
    simulator, api_url = telegram
    config = settings(postgres_url, nats_url, stream, api_url)
    store = await SqlStore.open(postgres_url)
    nc = await nats.connect(nats_url)
    try:
        for n in range(6):
            request = SendRequest("telegram", "bot", str(400 + n % 3), Content(text=f"m{n}"))
            await store.accept("default", request, None, time.time())
        log = JetStreamLog(nc, stream, 4, duplicate_window=20.0, ack_wait=5.0)
        await log.ensure()

        async def publish_then_die(batch: list[Publishable]) -> Sequence[Publishable]:
            for p in batch:
                assert await log.publish(p.conversation_id, p.msg_id, p.message_id.encode())
            raise ConnectionError("the relay died before marking")

        with pytest.raises(ConnectionError):
            await store.outbox.relay(time.time(), 100, 20.0, publish_then_die)
        assert await log.lag() == 3  # the three heads are in the stream, unmarked
    finally:
        await nc.close()
        await store.close()
    async with hub_running(tmp_path, **config) as hub:
        await until(lambda: len(simulator.sent) >= 6, what="all delivered")
        assert hub.metrics.relay_published._value.get() >= 3
        assert hub.message_log is not None
        await until_async(hub.message_log.lag, 0)
        followed = hub.metrics.log_followed_messages._value.get()
    assert sorted(simulator.texts()) == [f"m{n}" for n in range(6)]
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().stream_info(stream)
    finally:
        await nc.close()
    # three heads published twice (dropped the second time); the three next ones claimed
    # with their conversations' first deliveries (a worker alone owns every partition)
    assert (info.state.last_seq, followed) == (3, 3)


async def until_async(probe: Callable[[], Any], want: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := await probe()) != want:
        assert time.monotonic() < deadline, f"still {got!r}"
        await asyncio.sleep(0.05)


async def test_a_stream_deleted_under_a_running_hub_is_created_again_and_delivery_goes_on(
    tmp_path: Path,
    postgres_url: str,
    nats_url: str,
    stream: str,
    telegram: tuple[TelegramSimulator, str],
) -> None:
    simulator, api_url = telegram
    async with hub_running(tmp_path, **settings(postgres_url, nats_url, stream, api_url)) as hub:
        assert hub.admin_key is not None
        await send(hub.url, hub.admin_key, [("501", "before")])
        await until(lambda: simulator.texts("501") == ["before"])
        nc = await nats.connect(nats_url)
        try:
            await nc.jetstream().delete_stream(stream)  # an operator's mistake, a reset server
        finally:
            await nc.close()
        await send(hub.url, hub.admin_key, [("501", "after"), ("502", "after")])
        await until(lambda: len(simulator.sent) == 3, what="delivered after the reset")
    assert simulator.texts("501") == ["before", "after"]
