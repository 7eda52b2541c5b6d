"""The partitioned log's contract (:class:`chat4all.ports.MessageLog`), over every adapter:
in memory and NATS JetStream. A Kafka adapter would be one more ``params`` entry of the
``message_log`` fixture (conftest.py)."""

from __future__ import annotations

import asyncio
import time

from chat4all.domain.partition import partition_of
from chat4all.ports import LogEntry, MessageLog
from tests.chat4all.log.conftest import ACK_WAIT, MAX_DELIVER, PARTITIONS, eventually


async def fetch_all(log: MessageLog, partition: int, wait: float = 0.2) -> list[LogEntry]:
    return await log.fetch(partition, 100, wait)


async def test_a_second_publication_of_one_id_is_dropped_within_the_window(
    message_log: MessageLog,
) -> None:
    assert await message_log.publish("conv-a", "m1:0:0", b"m1")
    assert not await message_log.publish("conv-a", "m1:0:0", b"m1")
    assert await message_log.publish("conv-a", "m1:0:1", b"m1")  # a new generation goes
    got = await fetch_all(message_log, partition_of("conv-a", PARTITIONS))
    assert [e.msg_id for e in got] == ["m1:0:0", "m1:0:1"]


async def test_a_key_always_lands_on_its_partition_in_publication_order(
    message_log: MessageLog,
) -> None:
    keys = [f"conversation-{i}" for i in range(12)]
    for n in range(3):
        for key in keys:
            await message_log.publish(key, f"{key}:{n}", f"{key}|{n}".encode())
    seen: dict[str, list[int]] = {}
    for partition in range(PARTITIONS):
        for entry in await fetch_all(message_log, partition):
            key, n = entry.payload.decode().split("|")
            assert partition == partition_of(key, PARTITIONS)
            seen.setdefault(key, []).append(int(n))
            await message_log.ack(entry)
    assert seen == {key: [0, 1, 2] for key in keys}
    assert len({partition_of(k, PARTITIONS) for k in keys}) > 1  # the keys are spread


async def test_an_unacked_entry_is_the_fetchers_until_the_ack_wait_then_handed_out_again(
    message_log: MessageLog,
) -> None:
    await message_log.publish("k", "m:0:0", b"m")
    partition = partition_of("k", PARTITIONS)
    [first] = await message_log.fetch(partition, 10)
    assert first.deliveries == 1
    fetched_at = time.monotonic()
    # one active consumer: a second fetcher of the partition does not get it meanwhile
    assert await message_log.fetch(partition, 10) == []
    again = await eventually(lambda: message_log.fetch(partition, 10, 0.2), bool)
    assert [e.msg_id for e in again] == ["m:0:0"]
    assert again[0].deliveries == 2
    assert time.monotonic() - fetched_at >= ACK_WAIT * 0.9


async def test_progress_restarts_the_ack_wait_and_ack_ends_it(message_log: MessageLog) -> None:
    await message_log.publish("k", "m:0:0", b"m")
    partition = partition_of("k", PARTITIONS)
    [entry] = await message_log.fetch(partition, 10)
    deadline = time.monotonic() + ACK_WAIT * 2.5
    while time.monotonic() < deadline:  # held past two ack waits by progress alone
        await message_log.progress(entry)
        assert await message_log.fetch(partition, 10, ACK_WAIT / 4) == []
    await message_log.ack(entry)
    await eventually(message_log.lag, lambda n: n == 0)
    assert await message_log.fetch(partition, 10, ACK_WAIT * 1.5) == []


async def test_a_nak_hands_it_out_again_after_its_delay(message_log: MessageLog) -> None:
    await message_log.publish("k", "m:0:0", b"m")
    partition = partition_of("k", PARTITIONS)
    [entry] = await message_log.fetch(partition, 10)
    await message_log.nak(entry, 0.3)
    [again] = await eventually(lambda: message_log.fetch(partition, 10, 0.2), bool)
    assert (again.msg_id, again.deliveries) == ("m:0:0", 2)
    await message_log.term(again)
    assert await message_log.fetch(partition, 10, ACK_WAIT * 1.5) == []


async def test_an_entry_is_handed_out_at_most_max_deliver_times(message_log: MessageLog) -> None:
    await message_log.publish("k", "poison:0:0", b"poison")
    partition = partition_of("k", PARTITIONS)
    counts = []
    while len(counts) < MAX_DELIVER:
        got = await eventually(lambda: message_log.fetch(partition, 10, 0.2), bool)
        counts += [e.deliveries for e in got]
        await asyncio.gather(*(message_log.nak(e, 0) for e in got))
    assert counts == list(range(1, MAX_DELIVER + 1))
    assert message_log.max_deliver == MAX_DELIVER
    assert await message_log.fetch(partition, 10, ACK_WAIT * 1.5) == []
