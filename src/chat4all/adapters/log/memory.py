"""The partitioned log in memory: one process's, and the contract suite's reference."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from chat4all.domain.partition import partition_of
from chat4all.ports import LogEntry

__all__ = ["MemoryLog"]


@dataclass
class _Entry:
    msg_id: str
    payload: bytes
    deliveries: int = 0
    due: float = 0.0
    """When it may be handed out (again)."""


class MemoryLog:
    """:class:`~chat4all.ports.MessageLog` in this process's memory (lost at exit)."""

    def __init__(
        self,
        partitions: int,
        *,
        duplicate_window: float = 120.0,
        ack_wait: float = 30.0,
        max_deliver: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.partitions = partitions
        self.max_deliver = max_deliver
        self._window = duplicate_window
        self._ack_wait = ack_wait
        self._clock = clock
        self._parts: list[list[_Entry]] = [[] for _ in range(partitions)]
        self._seen: dict[str, float] = {}
        self._arrived = [asyncio.Event() for _ in range(partitions)]

    async def publish(self, key: str, msg_id: str, payload: bytes) -> bool:
        now = self._clock()
        for old in [m for m, at in self._seen.items() if at <= now - self._window]:
            del self._seen[old]
        if msg_id in self._seen:
            return False
        self._seen[msg_id] = now
        partition = partition_of(key, self.partitions)
        self._parts[partition].append(_Entry(msg_id, payload, due=now))
        self._arrived[partition].set()
        return True

    async def fetch(self, partition: int, limit: int, wait: float = 0.0) -> list[LogEntry]:
        found = self._due(partition, limit)
        if not found and wait > 0:
            arrived = self._arrived[partition]
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), wait)
            found = self._due(partition, limit)
        return found

    def _due(self, partition: int, limit: int) -> list[LogEntry]:
        now = self._clock()
        out: list[LogEntry] = []
        for entry in self._parts[partition]:
            if len(out) == limit:
                break
            if entry.due <= now and entry.deliveries < self.max_deliver:
                entry.deliveries += 1
                entry.due = now + self._ack_wait
                out.append(
                    LogEntry(partition, entry.msg_id, entry.payload, entry.deliveries, entry)
                )
        return out

    async def ack(self, entry: LogEntry) -> None:
        self._drop(entry)

    async def term(self, entry: LogEntry) -> None:
        self._drop(entry)

    async def nak(self, entry: LogEntry, delay: float) -> None:
        entry.handle.due = self._clock() + delay

    async def progress(self, entry: LogEntry) -> None:
        entry.handle.due = self._clock() + self._ack_wait

    async def lag(self) -> int:
        return sum(len(p) for p in self._parts)

    def _drop(self, entry: LogEntry) -> None:
        with contextlib.suppress(ValueError):
            self._parts[entry.partition].remove(entry.handle)
