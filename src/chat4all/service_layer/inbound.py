"""Use cases on what providers push to us: check, normalise (the channel's plugin does both),
deduplicate, store, announce."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Protocol

from chat4all.domain.model import DeliveryStatus, Message
from chat4all.errors import InvalidRequest, NotFound
from chat4all.plugin import Received, Receiver
from chat4all.ports import SendRequest, WebhookReply, WebhookRequest
from chat4all.service_layer.accounts import Accounts
from chat4all.service_layer.status import StatusPublisher

__all__ = ["Inbound", "InboundStore"]


class InboundStore(Protocol):
    async def record_inbound(
        self,
        tenant: str,
        request: SendRequest,
        update_id: str,
        provider_message_id: str,
        now: float,
    ) -> Message | None: ...

    async def record_receipt(
        self,
        channel: str,
        account: str,
        provider_message_id: str,
        status: DeliveryStatus,
        now: float,
    ) -> Message | None: ...


class Inbound:
    def __init__(
        self,
        store: InboundStore,
        publisher: StatusPublisher,
        accounts: Accounts,
        receivers: Mapping[str, Receiver] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``receivers``: each channel's webhook side, by channel name."""
        self._store = store
        self._publisher = publisher
        self._accounts = accounts
        self._receivers = dict(receivers or {})
        self._clock = clock

    async def webhook(self, channel: str, account: str, request: WebhookRequest) -> WebhookReply:
        """A provider's request to ``channel``'s webhook for our ``account``: :class:`NotFound`
        for a channel or account not configured here; the channel's
        :class:`~chat4all.errors.AuthError` (signature, secret) or
        :class:`~chat4all.errors.InvalidRequest` (body); else what it brought is stored."""
        self._accounts.owner(channel, account)
        receiver = self._receivers.get(channel)
        if receiver is None:
            raise NotFound(f"the {channel} channel takes no webhook calls here")
        received = await receiver.webhook(account, request)
        await self.received(channel, account, received)
        return received.reply

    async def received(self, channel: str, account: str, received: Received) -> list[Message]:
        """What ``account`` received (from its webhook or a poller): the messages stored now
        (a repeat of an update already stored is not), and the receipts applied."""
        tenant = self._accounts.owner(channel, account)
        stored = []
        for inbound in received.messages:
            request = SendRequest(channel, account, inbound.sender, inbound.content)
            message = await self._store.record_inbound(
                tenant, request, inbound.update_id, inbound.provider_message_id, self._clock()
            )
            if message is not None:
                self._publisher.inbound(message)
                stored.append(message)
        for receipt in received.receipts:
            await self.receipt(channel, account, receipt.provider_message_id, receipt.status)
        return stored

    async def receipt(
        self, channel: str, account: str, provider_message_id: str, status: DeliveryStatus
    ) -> Message | None:
        """A provider's delivery or read receipt for a message we sent through ``account``: the
        message when its status moved; ``None`` when it names no message of ours or changes
        nothing (a repeat, or a ``delivered`` after ``read``)."""
        self._accounts.owner(channel, account)
        if status not in (DeliveryStatus.DELIVERED, DeliveryStatus.READ):
            raise InvalidRequest(f"a receipt is delivered or read, not {status.value}")
        message = await self._store.record_receipt(
            channel, account, provider_message_id, status, self._clock()
        )
        if message is not None:
            self._publisher.status(message, status.value, None)
        return message
