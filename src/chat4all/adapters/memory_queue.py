"""An outbox in memory, with the leases of the stores' claims: for tests of the worker loop, and
of anything that claims (it keeps the :class:`~chat4all.service_layer.outbox_worker.LeasedQueue`
contract: a live worker's items are never claimed by another)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["MemoryQueue"]

T = TypeVar("T")


@dataclass
class _Row(Generic[T]):
    item: T
    available_at: float
    holder: str = ""
    until: float = 0.0
    claims: int = 0


class MemoryQueue(Generic[T]):
    def __init__(self, key: Callable[[T], Hashable]) -> None:
        self._key = key
        self._rows: dict[Hashable, _Row[T]] = {}
        self.renewals = 0

    def put(self, item: T, at: float = 0.0) -> None:
        """``item`` pending from ``at`` (replacing one of the same key)."""
        self._rows[self._key(item)] = _Row(item, at)

    def done(self, item: T) -> None:
        """Recorded as delivered: gone."""
        self._rows.pop(self._key(item), None)

    def later(self, item: T, at: float) -> None:
        """Pending again from ``at``."""
        row = self._rows[self._key(item)]
        row.available_at, row.holder, row.until = at, "", 0.0

    def pending(self) -> list[T]:
        return [r.item for r in self._rows.values()]

    def holder(self, item: T) -> tuple[str, float]:
        """Who holds ``item`` and until when (``("", 0.0)``: nobody)."""
        row = self._rows[self._key(item)]
        return row.holder, row.until

    def claims(self, item: T) -> int:
        return self._rows[self._key(item)].claims

    async def recover(self, now: float) -> int:
        lapsed = [r for r in self._rows.values() if r.holder and r.until <= now]
        for row in lapsed:
            row.holder, row.until = "", 0.0
        return len(lapsed)

    async def claim(self, now: float, limit: int, *, worker: str, lease: float) -> list[T]:
        free = [
            r
            for r in self._rows.values()
            if r.available_at <= now and (not r.holder or r.until <= now)
        ][:limit]
        for row in free:
            row.holder, row.until = worker, now + lease
            row.claims += 1
        return [r.item for r in free]

    async def renew(self, items: Sequence[T], *, worker: str, until: float) -> None:
        self.renewals += 1
        for item in items:
            row = self._rows.get(self._key(item))
            if row is not None and row.holder == worker:
                row.until = until
