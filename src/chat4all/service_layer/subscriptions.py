"""Use cases on a tenant's webhook subscriptions: subscribe, list (``of``), unsubscribe.

REST and gRPC both call :class:`Subscriptions`, so a URL is checked the same way whichever API
made it (:class:`~chat4all.service_layer.targets.TargetPolicy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

from chat4all.adapters.storage.webhooks import Subscription
from chat4all.errors import InvalidRequest
from chat4all.service_layer.targets import TargetPolicy

__all__ = ["Subscriptions", "SubscriptionStore", "EVENTS"]

EVENTS: Final = ("message.status", "message.inbound")


class SubscriptionStore(Protocol):
    async def subscribe(
        self, tenant: str, url: str, events: tuple[str, ...]
    ) -> tuple[Subscription, str]: ...

    async def of(self, tenant: str) -> list[Subscription]: ...

    async def unsubscribe(self, tenant: str, subscription_id: str) -> None: ...


class Subscriptions:
    def __init__(self, store: SubscriptionStore, targets: TargetPolicy) -> None:
        self._store = store
        self._targets = targets

    async def subscribe(
        self, tenant: str, url: str, events: Sequence[str]
    ) -> tuple[Subscription, str]:
        """A new subscription of ``tenant`` and its signing secret (shown once).
        :class:`InvalidRequest` names ``url`` or ``events`` when one is not acceptable."""
        self._targets.check(url)
        unknown = [e for e in events if e not in EVENTS]
        if unknown or not events:
            raise InvalidRequest(
                f"events: must be one or more of {', '.join(EVENTS)}", field="events"
            )
        return await self._store.subscribe(tenant, url, tuple(dict.fromkeys(events)))

    async def of(self, tenant: str) -> list[Subscription]:
        """The subscriptions of ``tenant``, oldest first."""
        return await self._store.of(tenant)

    async def unsubscribe(self, tenant: str, subscription_id: str) -> None:
        """:class:`~chat4all.errors.NotFound` when ``tenant`` has no such subscription."""
        await self._store.unsubscribe(tenant, subscription_id)
