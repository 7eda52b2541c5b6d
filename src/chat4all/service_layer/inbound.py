"""Use cases on what providers push to us: normalise, deduplicate, store, announce."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from chat4all.adapters.channels.telegram import parse_update
from chat4all.domain.model import Channel, DeliveryStatus, Message
from chat4all.errors import InvalidRequest
from chat4all.ports import SendRequest
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
        channel: Channel,
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._accounts = accounts
        self._clock = clock

    async def telegram_update(self, account: str, update: dict[str, Any]) -> Message | None:
        """One Bot API update for our ``account``; ``None`` when ignored or already seen.
        :class:`~chat4all.errors.NotFound` for an account not configured here."""
        tenant = self._accounts.owner(Channel.TELEGRAM, account)
        parsed = parse_update(update)
        if parsed is None:
            return None
        request = SendRequest(Channel.TELEGRAM, account, parsed.chat_id, parsed.content)
        message = await self._store.record_inbound(
            tenant, request, parsed.update_id, parsed.message_id, self._clock()
        )
        if message is not None:
            self._publisher.inbound(message)
        return message

    async def receipt(
        self, channel: Channel, account: str, provider_message_id: str, status: DeliveryStatus
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
