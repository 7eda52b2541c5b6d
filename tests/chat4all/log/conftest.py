from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import nats
import pytest

from chat4all.adapters.log.jetstream import JetStreamLog
from chat4all.adapters.log.memory import MemoryLog
from chat4all.ports import MessageLog

T = TypeVar("T")

PARTITIONS = 4
ACK_WAIT = 1.0
MAX_DELIVER = 3
WINDOW = 10.0


def stream_name() -> str:
    """A stream of one test's own (tests share the NATS server)."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["memory", "jetstream"])
async def message_log(request: pytest.FixtureRequest) -> AsyncIterator[MessageLog]:
    """The log's contract runs over every adapter: in memory, then on the real JetStream."""
    if request.param == "memory":
        yield MemoryLog(
            PARTITIONS, duplicate_window=WINDOW, ack_wait=ACK_WAIT, max_deliver=MAX_DELIVER
        )
        return
    url: str = request.getfixturevalue("nats_url")
    nc = await nats.connect(url)
    name = stream_name()
    log = JetStreamLog(
        nc,
        name,
        PARTITIONS,
        duplicate_window=WINDOW,
        ack_wait=ACK_WAIT,
        max_deliver=MAX_DELIVER,
    )
    await log.ensure()
    try:
        yield log
    finally:
        await log.close()
        await nc.jetstream().delete_stream(name)
        await nc.close()


async def eventually(
    probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], within: float = 15.0
) -> T:
    """``probe()`` again until ``ok`` of its answer (its last answer), or fail after
    ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        got = await probe()
        if ok(got):
            return got
        assert time.monotonic() < deadline, f"still {got!r} after {within} s"
