"""Live events of a tenant, for SSE (REST) and server streaming (gRPC).

:class:`LiveEvents` is the port; :class:`EventBus` its in-process adapter. Events enter it
through :class:`~chat4all.service_layer.status.StatusPublisher` only, after their transaction
committed; each subscriber has a bounded queue, and one that falls behind by more than
``QUEUE`` events is told so (an ``overflow`` event) and dropped, so a slow client never holds
the hub up. Events are live notifications, not a log: a client that reconnects reads what it
missed from ``GET /v1/conversations/{id}/messages``; durable delivery to clients is what
webhooks are for. With several processes (scale-out) the bus is NATS; the port stays.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

__all__ = ["Event", "EventBus", "LiveEvents", "QUEUE"]

QUEUE: Final = 1000


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    tenant: str
    type: str
    """``message.status`` or ``message.inbound`` (or ``overflow`` for a dropped subscriber)."""
    data: dict[str, Any]
    at: float


class LiveEvents(Protocol):
    """The port: publish a tenant's event to whoever listens now; listen to a tenant's."""

    def publish(self, tenant: str, type_: str, data: dict[str, Any]) -> None: ...

    def subscribe(self, tenant: str) -> AsyncIterator[Event]:
        """The tenant's events from now on; ends after an ``overflow`` event."""
        ...

    def subscribers(self, tenant: str) -> int: ...


@dataclass
class EventBus:
    """The in-process adapter of :class:`LiveEvents`."""

    _subscribers: dict[str, set[asyncio.Queue[Event]]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def publish(self, tenant: str, type_: str, data: dict[str, Any]) -> None:
        event = Event(next(self._ids), tenant, type_, data, time.time())
        for queue in list(self._subscribers.get(tenant, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # Too slow: drop its backlog and tell it once; the stream then ends.
                self._subscribers[tenant].discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(
                    Event(event.id, tenant, "overflow", {"dropped_from": event.id}, event.at)
                )

    async def subscribe(self, tenant: str) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE)
        self._subscribers.setdefault(tenant, set()).add(queue)
        try:
            while True:
                event = await queue.get()
                yield event
                if event.type == "overflow":
                    return
        finally:
            self._subscribers.get(tenant, set()).discard(queue)

    def subscribers(self, tenant: str) -> int:
        return len(self._subscribers.get(tenant, ()))
