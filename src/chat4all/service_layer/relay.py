"""The relay: the outbox's due heads, published to the partitioned log (``chat4all relay``).

The database stays the record of each message's state and of each conversation's order; the
log only carries the work to the workers. Each round takes the due heads of conversations with
nothing in flight that are not published for their present attempt, publishes each with the
conversation as key (so a conversation always lands on one partition) and the message id
``<message_id>:<attempts>:<generation>``, then marks them published, in one transaction that
keeps those rows locked meanwhile (several relays publish different rows). So:

- a relay that dies between publishing and marking publishes the same ids again: the log's
  duplicate window drops them;
- a row published longer ago than ``horizon`` and still pending unclaimed (the log lost it, or
  was reset) is published again under the next generation (looked for every quarter of the
  horizon: that walk reads the whole published backlog, the others only what is unpublished);
- a message that goes back to pending (a retry, a replay, a head the worker could not claim)
  is unpublished under a new generation by the store, and published again once it is a due
  head: a conversation that must wait is scheduled by ``available_at``, never held in the log.

The relay wakes when something is accepted or an outcome is recorded (the ``Wakeup`` port,
carried by NATS between processes), and polls every ``poll_interval`` anyway (retries come
due). After a round that published something it wakes the workers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chat4all.ports import MessageLog, Publishable
from chat4all.service_layer.outbox_worker import first_of
from chat4all.service_layer.wakeup import Wakeup
from opskit.lifecycle import sleep_or_stop

__all__ = ["Relay", "RelaySource", "LogEvents", "NullLogEvents"]

log = logging.getLogger(__name__)


class RelaySource(Protocol):
    async def relay(
        self,
        now: float,
        limit: int,
        horizon: float,
        publish: Callable[[list[Publishable]], Awaitable[Sequence[Publishable]]],
        lost: bool = True,
    ) -> list[Publishable]: ...


class LogEvents(Protocol):
    def published(self, fresh: int, again: int) -> None:
        """A relay round published ``fresh`` rows and ``again`` past the horizon."""
        ...

    def partitions_owned_now(self, count: int) -> None: ...

    def log_dead_lettered(self, count: int) -> None:
        """Messages dead-lettered after the log's last delivery without an outcome."""
        ...

    def log_followed(self, count: int) -> None:
        """Messages claimed with their conversation's previous delivery (not through the log)."""
        ...


class NullLogEvents:
    def published(self, fresh: int, again: int) -> None:
        pass

    def partitions_owned_now(self, count: int) -> None:
        pass

    def log_dead_lettered(self, count: int) -> None:
        pass

    def log_followed(self, count: int) -> None:
        pass


@dataclass
class Relay:
    outbox: RelaySource
    log: MessageLog
    wakeup: Wakeup
    """Rung when a message is accepted or an outcome recorded."""
    notify: Callable[[], None]
    """Wakes the workers after a round that published."""
    horizon: float = 120.0
    """Seconds after which a row published and still pending unclaimed is published again."""
    events: LogEvents = field(default_factory=NullLogEvents)
    batch: int = 256
    poll_interval: float = 0.5
    error_backoff: float = 1.0
    clock: Callable[[], float] = time.time
    _lost_at: float = field(default=float("-inf"), init=False)
    """When a round last looked for rows lost past the horizon (every quarter of it: that walk
    reads everything published and pending)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: rounds, at once after a full one; a failed round is logged and
        tried again after ``error_backoff``."""
        while not stop.is_set():
            try:
                busy = await self.round()
            except Exception as exc:  # the database or the log away for a moment
                log.error(
                    "relay round failed, next try in %g s: %s: %s",
                    self.error_backoff,
                    type(exc).__name__,
                    exc,
                )
                await sleep_or_stop(stop, self.error_backoff)
                continue
            if busy < self.batch:
                await first_of(stop.wait(), self.wakeup.wait(self.poll_interval))

    async def round(self) -> int:
        """Publish one batch; how many rows were published (and marked)."""
        now = self.clock()
        lost = now - self._lost_at >= self.horizon / 4
        if lost:
            self._lost_at = now
        done = await self.outbox.relay(now, self.batch, self.horizon, self._publish, lost)
        if done:
            again = sum(p.again for p in done)
            self.events.published(len(done) - again, again)
            self.notify()
        return len(done)

    async def _publish(self, batch: list[Publishable]) -> list[Publishable]:
        results = await asyncio.gather(
            *(self.log.publish(p.conversation_id, p.msg_id, p.message_id.encode()) for p in batch),
            return_exceptions=True,
        )
        failed = [(p, r) for p, r in zip(batch, results, strict=True) if isinstance(r, Exception)]
        if failed:
            first, exc = failed[0]
            log.warning(
                "relay: %d of %d publication(s) failed (tried again next round), first %s: %s: %s",
                len(failed),
                len(batch),
                first.msg_id,
                type(exc).__name__,
                exc,
            )
        # a duplicate (False) is in the log already: published all the same
        return [p for p, r in zip(batch, results, strict=True) if not isinstance(r, Exception)]
