"""The one outbox-worker loop: a failed round is logged and retried, never the worker's end;
leases are renewed while a delivery is slow; a wake-up beats the poll."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest

from chat4all.adapters.memory_queue import MemoryQueue
from chat4all.service_layer.outbox_worker import OutboxWorker


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


class Failing(MemoryQueue[str]):
    """Refuses the first ``recover`` and ``claim`` calls, as a database away for a moment."""

    def __init__(self, recover: int = 0, claim: int = 0) -> None:
        super().__init__(key=lambda item: item)
        self.fail_recover, self.fail_claim = recover, claim

    async def recover(self, now: float) -> int:
        if self.fail_recover:
            self.fail_recover -= 1
            raise ConnectionError("database away")
        return await super().recover(now)

    async def claim(self, now: float, limit: int, *, worker: str, lease: float) -> list[str]:
        if self.fail_claim:
            self.fail_claim -= 1
            raise ConnectionError("database away")
        return await super().claim(now, limit, worker=worker, lease=lease)


class Recording:
    def __init__(self, queue: MemoryQueue[str]) -> None:
        self.queue = queue
        self.delivered: list[str] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, item: str) -> bool:
        if self.gate is not None:
            await self.gate.wait()
        if item.startswith("bad"):
            raise ValueError(f"cannot deliver {item}")
        self.delivered.append(item)
        self.queue.done(item)
        return True


@contextlib.asynccontextmanager
async def running(worker: OutboxWorker[str]) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)  # it ends when asked, and only then


def loop(queue: MemoryQueue[str], deliver: Recording, **kw: float) -> OutboxWorker[str]:
    settings = {"poll_interval": 0.05, "error_backoff": 0.05, **kw}
    return OutboxWorker("test", queue, deliver, key=lambda i: i, **settings)  # type: ignore[arg-type]


async def test_failed_rounds_are_logged_and_retried_never_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = Failing(recover=2, claim=3)
    queue.put("a")
    deliver = Recording(queue)
    recovered: list[int] = []
    worker = loop(queue, deliver)
    worker.on_recovered = recovered.append
    async with running(worker):
        await until(lambda: deliver.delivered == ["a"])
        queue.put("b")
        await until(lambda: deliver.delivered == ["a", "b"])
    assert (queue.fail_recover, queue.fail_claim) == (0, 0)
    assert recovered == [0]  # recovered once, after the database came back
    failures = [r for r in caplog.records if "test round failed" in r.getMessage()]
    assert len(failures) == 5 and all(r.levelno == logging.ERROR for r in failures)
    assert "ConnectionError: database away" in failures[0].getMessage()


async def test_an_item_that_raises_is_let_go_and_the_others_are_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue: MemoryQueue[str] = MemoryQueue(key=lambda i: i)
    for item in ("bad-1", "good-1", "good-2"):
        queue.put(item)
    deliver = Recording(queue)
    worker = loop(queue, deliver, lease=30.0)
    async with running(worker):
        await until(lambda: sorted(deliver.delivered) == ["good-1", "good-2"])
        assert worker.held() == []  # not renewed: its lease runs out and it is claimed again
        holder, until_ = queue.holder("bad-1")
        assert holder == worker.worker and until_ > time.time()
        queue.put("good-3")
        await until(lambda: "good-3" in deliver.delivered)  # the worker went on
    assert queue.claims("bad-1") == 1  # a live lease keeps it from being claimed twice
    [record] = [r for r in caplog.records if "delivering 'bad-1' failed" in r.getMessage()]
    assert record.exc_info is not None  # with its traceback


async def test_leases_are_renewed_while_a_delivery_is_slow() -> None:
    queue: MemoryQueue[str] = MemoryQueue(key=lambda i: i)
    queue.put("slow")
    deliver = Recording(queue)
    deliver.gate = asyncio.Event()
    worker = loop(queue, deliver, lease=0.3)
    async with running(worker):
        await until(lambda: queue.claims("slow") == 1)
        _, first = queue.holder("slow")
        await until(lambda: queue.renewals >= 3)
        holder, later = queue.holder("slow")
        assert holder == worker.worker and later > first
        # another worker finds nothing to take while this one lives
        assert await queue.claim(time.time(), 10, worker="other", lease=0.3) == []
        deliver.gate.set()
        await until(lambda: deliver.delivered == ["slow"])  # delivered once


async def test_a_wake_up_beats_the_poll_and_a_held_outcome_waits_for_release() -> None:
    queue: MemoryQueue[str] = MemoryQueue(key=lambda i: i)
    recorded: list[str] = []

    async def deliver(item: str) -> bool:
        recorded.append(item)
        return False  # the outcome waits to be recorded

    worker = OutboxWorker("test", queue, deliver, key=lambda i: i, poll_interval=60.0)
    async with running(worker):
        await asyncio.sleep(0)  # parked in its first wait (the queue is empty)
        queue.put("now")
        began = time.monotonic()
        worker.wakeup.wake()
        await until(lambda: recorded == ["now"])
        assert time.monotonic() - began < 30  # not the 60 s poll
        assert worker.held() == ["now"]
        worker.release("now")
        assert worker.held() == []
