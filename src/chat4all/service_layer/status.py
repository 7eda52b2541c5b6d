"""The one road from a committed change to the live event bus.

A status change (sent, failed, a provider's delivered or read) and an inbound message are
announced in two halves, each in one place:

- in the transaction that records the change, the store queues the client webhooks it causes
  (the fanout ``build_hub`` gives the store) and stores the live event (its id is the event's
  id everywhere), so both exist exactly when the change commits and survive a crash like it;
- after the commit, the store hands the stored events to :class:`StatusPublisher`
  (``build_hub`` makes it the store's ``live`` sink), which publishes them to the live bus
  (SSE, gRPC streams). Nothing else publishes to the bus.
"""

from __future__ import annotations

from collections.abc import Sequence

from chat4all.service_layer.events import Event, LiveEvents

__all__ = ["StatusPublisher"]


class StatusPublisher:
    def __init__(self, bus: LiveEvents) -> None:
        self._bus = bus

    def committed(self, events: Sequence[Event]) -> None:
        """``events`` were stored, their transaction committed: to the live bus."""
        for event in events:
            self._bus.publish(event)
