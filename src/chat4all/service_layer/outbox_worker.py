"""The one loop of every outbox worker: claim, deliver, record, back off, renew leases.

The dispatcher (messages to providers) and the webhook dispatcher (events to clients) differ in
how one item is delivered and recorded; everything around it is :class:`OutboxWorker`:

- at start (and until it succeeds) it hands back the rows of workers whose leases ran out
  (``recover``);
- each round claims a batch of due items under this worker's id and a lease, delivers them
  concurrently, and takes another round at once when the batch was not empty;
- an idle worker waits for the wake-up or ``poll_interval`` (retries come due), whichever first;
- every third of a lease, the leases of what it still holds are renewed, so a slow delivery is
  never taken by another worker while this one is alive;
- **one behaviour on errors**: a round that fails (the database away for a moment) is logged
  and tried again after ``error_backoff``; an item whose delivery raised is logged and let go
  (its lease runs out and a later claim, of any worker, takes it again). Nothing an item or the
  database does ends the loop; only ``stop`` does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from chat4all.domain.lease import worker_id
from chat4all.service_layer.wakeup import LocalWakeup, Wakeup
from opskit.lifecycle import sleep_or_stop

__all__ = ["OutboxWorker", "LeasedQueue", "first_of"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class LeasedQueue(Protocol[T]):
    """The claiming half of an outbox (messages' or webhooks'), as the stores implement it."""

    async def recover(self, now: float) -> int:
        """Rows in flight under a lease that ran out at ``now``, back to pending; how many."""
        ...

    async def claim(self, now: float, limit: int, *, worker: str, lease: float) -> list[T]:
        """Due items, held by ``worker`` until ``now + lease``."""
        ...

    async def renew(self, items: Sequence[T], *, worker: str, until: float) -> None:
        """Extend ``worker``'s leases of ``items`` to ``until``."""
        ...


@dataclass
class OutboxWorker(Generic[T]):
    name: str
    """For the logs: ``dispatcher``, ``webhooks``."""
    queue: LeasedQueue[T]
    deliver: Callable[[T], Awaitable[bool]]
    """Deliver one item and record its outcome: ``True`` when recorded, ``False`` when the
    outcome waits to be recorded (the item stays held, its lease renewed, until
    :meth:`release`). Raising lets the item go: its lease runs out, and it is claimed again."""
    key: Callable[[T], Hashable]
    """An item's identity (its row id)."""
    batch: int = 64
    lease: float = 30.0
    poll_interval: float = 0.5
    error_backoff: float = 1.0
    clock: Callable[[], float] = time.time
    wakeup: Wakeup = field(default_factory=LocalWakeup)
    worker: str = field(default_factory=worker_id)
    before_round: Callable[[], Awaitable[None]] | None = None
    """Called first in every round (the dispatcher records again what the store refused)."""
    on_recovered: Callable[[int], None] | None = None
    """Told how many rows ``recover`` handed back at start."""
    _held: dict[Hashable, T] = field(default_factory=dict)

    def held(self) -> list[T]:
        """Claimed and not yet recorded (their leases are renewed)."""
        return list(self._held.values())

    def release(self, item: T) -> None:
        """``item``'s outcome is recorded at last: stop renewing its lease."""
        self._held.pop(self.key(item), None)

    async def run(self, stop: asyncio.Event) -> None:
        renewing = asyncio.create_task(self._renew_often(stop), name=f"{self.name}-leases")
        recovered = False
        try:
            while not stop.is_set():
                try:
                    if not recovered:
                        count = await self.queue.recover(self.clock())
                        recovered = True
                        if self.on_recovered is not None:
                            self.on_recovered(count)
                    busy = await self.round()
                except Exception as exc:  # the database away for a moment must not end the worker
                    log.error(
                        "%s round failed, next try in %g s: %s: %s",
                        self.name,
                        self.error_backoff,
                        type(exc).__name__,
                        exc,
                    )
                    await sleep_or_stop(stop, self.error_backoff)
                    continue
                if not busy:
                    await first_of(stop.wait(), self.wakeup.wait(self.poll_interval))
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)

    async def round(self) -> int:
        """Claim and deliver one batch; returns how many were claimed."""
        if self.before_round is not None:
            await self.before_round()
        items = await self.queue.claim(
            self.clock(), self.batch, worker=self.worker, lease=self.lease
        )
        self._held.update((self.key(item), item) for item in items)
        if items:
            await asyncio.gather(*(self._one(item) for item in items))
        return len(items)

    async def _one(self, item: T) -> None:
        try:
            recorded = await self.deliver(item)
        except Exception as exc:  # let go: claimed again once its lease ran out
            log.error(
                "%s: delivering %r failed (it is tried again when its lease runs out): %s: %s",
                self.name,
                self.key(item),
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            self.release(item)
        else:
            if recorded:
                self.release(item)

    async def _renew_often(self, stop: asyncio.Event) -> None:
        """Every third of a lease, extend the leases of what this worker still holds."""
        while not await sleep_or_stop(stop, self.lease / 3):
            held = self.held()
            if not held:
                continue
            try:
                await self.queue.renew(held, worker=self.worker, until=self.clock() + self.lease)
            except Exception as exc:  # next time; a lease outlives two misses
                log.warning(
                    "%s could not renew %d lease(s): %s: %s",
                    self.name,
                    len(held),
                    type(exc).__name__,
                    exc,
                )


async def first_of(*waits: Awaitable[object]) -> None:
    """Until the first of ``waits`` ends; the others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
