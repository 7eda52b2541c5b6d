"""Use cases on what providers push to us: check, normalise (the channel's plugin does both),
deduplicate, store, announce."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Final, Literal, Protocol

from chat4all.domain.model import DeliveryStatus, Message
from chat4all.errors import InvalidRequest, NotFound
from chat4all.plugin import Receipt, Received, Receiver
from chat4all.ports import SendRequest, WebhookReply, WebhookRequest
from chat4all.service_layer.accounts import Accounts
from chat4all.service_layer.status import StatusPublisher

__all__ = ["Inbound", "InboundStore", "Outcome", "RECEIPT_STATUSES"]


Outcome = Literal["applied", "recorded", "stale", "unknown"]
"""What a receipt did: moved statuses; recorded in a history without moving it (``failed``
after ``delivered``); nothing (a repeat, or late and out of order); named no message of ours."""

RECEIPT_STATUSES: Final = frozenset(
    {DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ, DeliveryStatus.FAILED}
)


class InboundStore(Protocol):
    async def record_inbound(
        self,
        tenant: str,
        request: SendRequest,
        update_id: str,
        provider_message_id: str,
        now: float,
        *,
        echo: bool = False,
    ) -> Message | None: ...

    async def record_receipt(
        self,
        channel: str,
        account: str,
        provider_message_id: str,
        status: DeliveryStatus,
        now: float,
    ) -> Message | None: ...

    async def apply_receipt(
        self,
        channel: str,
        account: str,
        status: DeliveryStatus,
        now: float,
        *,
        provider_message_id: str | None = None,
        detail: str | None = None,
        recipient: str | None = None,
        watermark: float | None = None,
    ) -> tuple[list[Message], Outcome]: ...


class Inbound:
    def __init__(
        self,
        store: InboundStore,
        publisher: StatusPublisher,
        accounts: Accounts,
        receivers: Mapping[str, Receiver] | None = None,
        clock: Callable[[], float] = time.time,
        counted: Callable[[str, Outcome], None] | None = None,
    ) -> None:
        """``receivers``: each channel's webhook side, by channel name. ``counted``: told each
        receipt's channel and outcome (the ``chat4all_receipts`` metric)."""
        self._counted = counted
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
            if inbound.echo and await self._echo_of_ours(
                channel, account, inbound.provider_message_id
            ):
                continue
            request = SendRequest(channel, account, inbound.sender, inbound.content)
            message = await self._store.record_inbound(
                tenant,
                request,
                inbound.update_id,
                inbound.provider_message_id,
                self._clock(),
                echo=inbound.echo,
            )
            if message is not None:
                self._publisher.inbound(message)
                stored.append(message)
        for receipt in received.receipts:
            await self.apply(channel, account, receipt)
        return stored

    async def _echo_of_ours(self, channel: str, account: str, provider_message_id: str) -> bool:
        """An echo of a message we sent: it reached the provider (``sent``, if nothing later
        was reported already); not stored again."""
        changed, outcome = await self._store.apply_receipt(
            channel,
            account,
            DeliveryStatus.SENT,
            self._clock(),
            provider_message_id=provider_message_id,
        )
        for message in changed:
            self._publisher.status(message, DeliveryStatus.SENT.value, None)
        return outcome != "unknown"

    async def apply(self, channel: str, account: str, receipt: Receipt) -> list[Message]:
        """A provider's status report (one message, or a watermark over a conversation):
        the messages whose status moved. Status only moves forward: a repeat or a late report
        changes nothing, a ``failed`` after ``delivered`` is only recorded in the history;
        every outcome is counted."""
        self._accounts.owner(channel, account)
        if receipt.status not in RECEIPT_STATUSES:
            raise InvalidRequest(
                f"a receipt is sent, delivered, read or failed, not {receipt.status.value}"
            )
        if receipt.watermark is not None and not receipt.recipient:
            raise InvalidRequest("a watermark receipt names the conversation's recipient")
        changed, outcome = await self._store.apply_receipt(
            channel,
            account,
            receipt.status,
            self._clock(),
            provider_message_id=receipt.provider_message_id or None,
            detail=receipt.detail,
            recipient=receipt.recipient,
            watermark=receipt.watermark,
        )
        if self._counted is not None:
            self._counted(channel, outcome)
        for message in changed:
            self._publisher.status(message, receipt.status.value, receipt.detail)
        return changed

    async def receipt(
        self, channel: str, account: str, provider_message_id: str, status: DeliveryStatus
    ) -> Message | None:
        """A provider's receipt for one message we sent through ``account``: the message when
        its status moved; ``None`` when it names no message of ours or changes nothing (a
        repeat, or a ``delivered`` after ``read``)."""
        changed = await self.apply(channel, account, Receipt(provider_message_id, status))
        return changed[0] if changed else None
