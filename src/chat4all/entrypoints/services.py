"""What the REST and gRPC entrypoints call: the use cases, in one object handed to each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from chat4all.adapters.storage.webhooks import Subscription
from chat4all.service_layer.access import Access
from chat4all.service_layer.accounts import Accounts
from chat4all.service_layer.actions import Actions
from chat4all.service_layer.channel_accounts import ChannelAccounts
from chat4all.service_layer.dead_letters import DeadLetters
from chat4all.service_layer.events import LiveStreams
from chat4all.service_layer.inbound import Inbound
from chat4all.service_layer.media import MediaLibrary
from chat4all.service_layer.messages import Messages
from chat4all.service_layer.tenants import Tenants

__all__ = ["Services", "SubscriptionBook"]


class SubscriptionBook(Protocol):
    """Client webhook subscriptions of a tenant."""

    async def subscribe(
        self, tenant: str, url: str, events: tuple[str, ...]
    ) -> tuple[Subscription, str]:
        """A new subscription and its signing secret (shown once)."""
        ...

    async def of(self, tenant: str) -> list[Subscription]: ...

    async def unsubscribe(self, tenant: str, subscription_id: str) -> None:
        """``NotFound`` when ``tenant`` has no such subscription."""
        ...


@dataclass(frozen=True, slots=True)
class Services:
    messages: Messages
    access: Access
    accounts: Accounts
    dead_letters: DeadLetters
    subscriptions: SubscriptionBook
    inbound: Inbound
    events: LiveStreams
    media: MediaLibrary
    actions: Actions
    tenants: Tenants
    channel_accounts: ChannelAccounts | None = None
    """Paused channel accounts and their resume (admin); ``None``: not offered."""
    wake: Callable[[], None] | None = None
    """Tells the dispatcher a new message is due (called after each accepted send)."""
