"""Claiming through the partitioned log: the workers' side of ``CHAT4ALL_NATS_URL``.

- :class:`PartitionOwner`: this worker's share of the log's partitions, through leases
  (:class:`~chat4all.ports.PartitionLeases`) renewed every third of ``lease``; a worker that
  stops gives its partitions back at once, one that dies loses them when its lease runs out.
- :class:`LogQueue`: the dispatcher's :class:`~chat4all.ports.Outbox` (so the
  :class:`~chat4all.service_layer.dispatcher.Dispatcher` and its loop are unchanged). A claim
  fetches from the owned partitions, then claims exactly those message ids in the store, under
  the store's rules (at most one message of a conversation in flight, leases): the database
  decides, the log only proposes. An entry claimed is acknowledged once the attempt's outcome is
  recorded (its ack wait restarts at each lease renewal), so a worker that dies mid-delivery
  leaves the entry to be handed out again. An entry not claimable is settled at once: acked when
  its row is gone (sent), dead or not a due head (the store marks it unpublished, and the relay
  publishes it again when it is one: a conversation that waits never holds up its partition);
  handed back with a delay when its row is in flight under another worker's live lease. An
  entry handed out for the log's last time (``max_deliver``) whose row is still a due head is
  dead-lettered: the workers that took it before presumably crashed on it.
- **A busy conversation stays with its worker.** A delivery of a conversation on a partition
  this worker owns is recorded together with the claim of the conversation's next due head,
  for this worker, in the same transaction (:meth:`LogQueue.sent`); that item is handed out by
  the next claim. So the log carries the first message of a burst (and those of partitions
  that moved), not every message: no relay round, publication, fetch and ack per message. The
  store decides as for any claim (one head per conversation, leases); a worker that stops
  hands back what it claimed this way and did not start (:meth:`LogQueue.serving`), and one
  that dies leaves it to its lease, then the relay publishes it as any unclaimed head.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from chat4all.domain.lease import worker_id
from chat4all.domain.model import Message
from chat4all.domain.partition import partition_of
from chat4all.ports import LogEntry, MessageLog, OutboxItem, PartitionLeases
from chat4all.service_layer.relay import LogEvents, NullLogEvents
from opskit.lifecycle import sleep_or_stop

__all__ = ["PartitionOwner", "LogQueue", "LogOutbox"]

log = logging.getLogger(__name__)


@dataclass
class PartitionOwner:
    leases: PartitionLeases
    partitions: int
    lease: float = 10.0
    worker: str = field(default_factory=worker_id)
    clock: Callable[[], float] = time.time
    events: LogEvents = field(default_factory=NullLogEvents)
    on_gained: Callable[[], None] | None = None
    """Called when a rebalance gave this worker partitions it did not have (wake it)."""
    _owned: list[int] = field(default_factory=list)
    _until: float = 0.0

    def owned(self, now: float) -> list[int]:
        """The partitions this worker holds at ``now`` (none once its lease ran out unrenewed)."""
        return list(self._owned) if now < self._until else []

    async def rebalance(self) -> list[int]:
        now = self.clock()
        owned = await self.leases.rebalance(self.worker, now, self.lease, self.partitions)
        gained = set(owned) - set(self.owned(now))
        if set(owned) != set(self._owned):
            log.info("worker %s consumes partitions %s", self.worker, owned or "none")
        self._owned, self._until = owned, now + self.lease
        self.events.partitions_owned_now(len(owned))
        if gained and self.on_gained is not None:
            self.on_gained()
        return owned

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: rebalance every third of the lease; then give the partitions back."""
        try:
            while not stop.is_set():
                try:
                    await self.rebalance()
                except Exception as exc:  # next time; the lease outlives two misses
                    log.warning(
                        "could not renew the partition leases: %s: %s", type(exc).__name__, exc
                    )
                await sleep_or_stop(stop, self.lease / 3)
        finally:
            self._owned, self._until = [], 0.0
            self.events.partitions_owned_now(0)
            try:
                await self.leases.release(self.worker)
            except Exception as exc:  # they run out by themselves
                log.warning("could not give the partitions back: %s: %s", type(exc).__name__, exc)


class LogOutbox(Protocol):
    """What :class:`LogQueue` needs of the store (the SQL store has it)."""

    async def recover(self, now: float) -> int: ...

    async def claim_ids(
        self, now: float, ids: Sequence[str], *, worker: str, lease: float
    ) -> tuple[list[OutboxItem], dict[str, float]]: ...

    async def dead_heads(self, ids: Sequence[str], reason: str, now: float) -> list[Message]: ...

    async def renew(self, items: Sequence[OutboxItem], *, worker: str, until: float) -> None: ...

    async def sent_then_next(
        self, item: OutboxItem, provider_id: str, now: float, follow: float | None = None
    ) -> list[OutboxItem]: ...

    async def retry(
        self,
        item: OutboxItem,
        at: float,
        reason: str,
        now: float,
        done: tuple[str, ...] = (),
        counted: bool = True,
    ) -> None: ...

    async def dead(
        self, item: OutboxItem, reason: str, now: float, done: tuple[str, ...] = ()
    ) -> None: ...

    async def depth(self) -> int: ...


@dataclass
class LogQueue:
    """:class:`~chat4all.ports.Outbox` that claims what the log hands this worker's
    partitions (see the module's documentation)."""

    store: LogOutbox
    log: MessageLog
    owner: PartitionOwner
    relay_wake: Callable[[], None]
    """Rung after each recorded outcome: the conversation's next message is a head now."""
    events: LogEvents = field(default_factory=NullLogEvents)
    """Told how many messages were dead-lettered here (their ``failed`` is announced by the
    store, with the change)."""
    clock: Callable[[], float] = time.time
    _entries: dict[str, LogEntry] = field(default_factory=dict)
    _next: list[OutboxItem] = field(default_factory=list)
    """Claimed with a delivery of their conversation, handed out by the next claim."""
    _lease: float | None = None
    """The dispatcher's lease (its claims say it)."""

    async def recover(self, now: float) -> int:
        return await self.store.recover(now)

    async def claim(self, now: float, limit: int, *, worker: str, lease: float) -> list[OutboxItem]:
        self._lease = lease
        ready, self._next = self._next[:limit], self._next[limit:]
        partitions = self.owner.owned(now)
        if not partitions or len(ready) >= limit:
            return ready
        return ready + await self._fetched(now, limit - len(ready), partitions, worker, lease)

    async def _fetched(
        self, now: float, limit: int, partitions: list[int], worker: str, lease: float
    ) -> list[OutboxItem]:
        """Up to ``limit`` items the log hands ``partitions``, claimed in the store."""
        each = max(1, limit // len(partitions))
        fetched = await asyncio.gather(
            *(self.log.fetch(p, each) for p in partitions), return_exceptions=True
        )
        entries: dict[str, LogEntry] = {}
        copies: list[LogEntry] = []
        progress: list[Any] = []
        for partition, got in zip(partitions, fetched, strict=True):
            if isinstance(got, BaseException):
                log.warning(
                    "could not fetch from partition %d: %s: %s", partition, type(got).__name__, got
                )
                continue
            for entry in got:
                message_id = entry.payload.decode()
                held = self._entries.get(message_id)
                if held is not None and held.msg_id == entry.msg_id:
                    # ours, handed out again (its ack wait ran out): keep the newer handle
                    self._entries[message_id] = entry
                    progress.append(self.log.progress(entry))
                elif held is not None or message_id in entries:
                    copies.append(entry)  # another generation of one row: its twin decides
                else:
                    entries[message_id] = entry
        await _quietly("progress", progress)
        if not entries and not copies:
            return []
        last = [i for i, e in entries.items() if e.deliveries >= self.log.max_deliver]
        reason = (
            f"handed out {self.log.max_deliver} times by the log without an outcome "
            "(did a worker crash on it each time?)"
        )
        dead = await self.store.dead_heads(last, reason, now)
        if dead:
            self.events.log_dead_lettered(len(dead))
            log.error(
                "dead-lettered %d message(s) the workers never finished: %s",
                len(dead),
                [m.id for m in dead],
            )
            self.relay_wake()
        wanted = [i for i in entries if i not in last]
        items, later = await self.store.claim_ids(now, wanted, worker=worker, lease=lease)
        for item in items:
            self._entries[item.message.id] = entries[item.message.id]
        claimed = {item.message.id for item in items}
        settle = [self.log.ack(e) for e in copies] + [self.log.term(entries[i]) for i in last]
        for message_id in wanted:
            if message_id in claimed:
                continue
            entry = entries[message_id]
            if message_id in later:
                settle.append(self.log.nak(entry, later[message_id]))
            else:
                settle.append(self.log.ack(entry))
        await _quietly("settle", settle)
        return items

    async def renew(self, items: Sequence[OutboxItem], *, worker: str, until: float) -> None:
        """``items`` (the dispatcher's) and those claimed with a delivery that wait for the
        next round (a round lasts as long as its slowest delivery: longer than a lease when a
        provider hangs), so no other worker takes them meanwhile."""
        await self.store.renew([*items, *self._next], worker=worker, until=until)
        await _quietly(
            "progress",
            [self.log.progress(e) for i in items if (e := self._entries.get(i.message.id))],
        )

    async def sent(self, item: OutboxItem, provider_id: str, now: float) -> None:
        """Recorded; on a partition this worker owns, with the claim of the conversation's
        next due head (then the relay has nothing to publish for it: not woken)."""
        owned = partition_of(item.conversation.id, self.log.partitions) in self.owner.owned(now)
        follow = self._lease if owned else None
        following = await self.store.sent_then_next(item, provider_id, now, follow)
        if following:
            self._next += following
            self.events.log_followed(len(following))
        await self._done(item, wake=follow is None)

    def serving(
        self, run: Callable[[asyncio.Event], Awaitable[None]]
    ) -> Callable[[asyncio.Event], Awaitable[None]]:
        """``run`` (the dispatcher's loop), then what it claimed with deliveries and did not
        start is handed back (pending at once, its attempt not counted): a worker that stops
        leaves no conversation waiting for a lease to run out."""

        async def running(stop: asyncio.Event) -> None:
            try:
                await run(stop)
            finally:
                left, self._next = self._next, []
                now = self.clock()
                for item in left:
                    try:
                        await self.store.retry(
                            item, now, "handed back: the worker stopped", now, counted=False
                        )
                    except Exception as exc:  # its lease runs out, then the relay has it
                        log.warning(
                            "could not hand back %s: %s: %s",
                            item.message.id,
                            type(exc).__name__,
                            exc,
                        )

        return running

    async def retry(
        self,
        item: OutboxItem,
        at: float,
        reason: str,
        now: float,
        done: tuple[str, ...] = (),
        counted: bool = True,
    ) -> None:
        await self.store.retry(item, at, reason, now, done, counted)
        await self._done(item)

    async def dead(
        self, item: OutboxItem, reason: str, now: float, done: tuple[str, ...] = ()
    ) -> None:
        await self.store.dead(item, reason, now, done)
        await self._done(item)

    async def depth(self) -> int:
        return await self.store.depth()

    async def _done(self, item: OutboxItem, wake: bool = True) -> None:
        """``item``'s outcome is recorded: its entry (if the log handed it out) is acked, the
        relay woken unless told otherwise."""
        entry = self._entries.pop(item.message.id, None)
        if entry is not None:
            await _quietly("ack", [self.log.ack(entry)])
        if wake:
            self.relay_wake()


async def _quietly(what: str, calls: list[Any]) -> None:
    """Await ``calls``; a failure is logged (the log hands the entry out again, and the
    store's record decides then)."""
    if not calls:
        return
    results = await asyncio.gather(*calls, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        log.warning(
            "log %s: %d of %d failed, first: %s: %s",
            what,
            len(failed),
            len(results),
            type(failed[0]).__name__,
            failed[0],
        )
