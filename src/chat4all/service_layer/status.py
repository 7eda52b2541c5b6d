"""The one road from a committed change to the live event bus.

A status change (sent, failed, a provider's delivered or read) and an inbound message are
announced in two halves, each in one place:

- in the transaction that records the change, the store queues the client webhooks it causes
  (the fanout ``build_hub`` gives the store), so a webhook is queued exactly when its change
  commits and survives a crash like the change itself;
- after the commit, the use case that made the change tells :class:`StatusPublisher`, which
  publishes it to the live bus (SSE, gRPC streams). Nothing else publishes to the bus.
"""

from __future__ import annotations

from chat4all.domain.model import Message, message_document, status_document
from chat4all.service_layer.events import LiveEvents

__all__ = ["StatusPublisher"]


class StatusPublisher:
    def __init__(self, bus: LiveEvents) -> None:
        self._bus = bus

    def status(self, message: Message, status: str, detail: str | None) -> None:
        """``message`` moved to ``status`` (its change committed)."""
        self._bus.publish(
            message.tenant, "message.status", status_document(message, status, detail)
        )

    def inbound(self, message: Message) -> None:
        """``message`` was received from a provider (and stored)."""
        self._bus.publish(message.tenant, "message.inbound", message_document(message))
