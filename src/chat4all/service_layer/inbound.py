"""Use cases on what providers push to us: check, normalise (the channel's plugin does both),
deduplicate, store, announce."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Final, Literal, Protocol

from chat4all.domain.model import Attachment, Content, DeliveryStatus, Media, Message
from chat4all.errors import InvalidRequest, NotFound, RetryableDelivery
from chat4all.plugin import Receipt, Received, Receiver
from chat4all.ports import MediaStore, SendRequest, WebhookReply, WebhookRequest
from chat4all.service_layer.accounts import Accounts
from chat4all.service_layer.status import StatusPublisher

__all__ = ["Inbound", "InboundStore", "Outcome", "RECEIPT_STATUSES", "FETCH_ATTEMPTS"]

log = logging.getLogger(__name__)

_LONGEST_WAIT: Final = 5.0
"""Seconds between two tries at most (the provider may ask for longer: the file is then
given up, the message kept)."""

Fetch = Callable[[str, str, str, MediaStore], Awaitable[Media]]
"""A :class:`~chat4all.plugin.MediaConnector`'s ``fetch``."""

FETCH_ATTEMPTS: Final = 3
"""Tries to download an inbound attachment (a retryable failure waits, then tries again)."""


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
        announce: bool = True,
    ) -> Message | None: ...

    async def announce_inbound(
        self, tenant: str, message_id: str, content: Content, now: float
    ) -> Message: ...

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
        connectors: Mapping[str, object] | None = None,
        media: MediaStore | None = None,
        fetch_backoff: float = 0.5,
    ) -> None:
        """``receivers``: each channel's webhook side, by channel name. ``counted``: told each
        receipt's channel and outcome (the ``chat4all_receipts`` metric). ``connectors``
        (by channel) that are :class:`~chat4all.plugin.MediaConnector` s (have ``fetch``)
        download inbound attachments into ``media``; ``fetch_backoff``: the first wait
        between tries."""
        self._counted = counted
        self._connectors = connectors if connectors is not None else {}
        """Read at each message: the hub points its simulated channels' entries at their
        simulators once they are served."""
        self._media = media
        self._fetch_backoff = fetch_backoff
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
            fetcher: Fetch | None = getattr(self._connectors.get(channel), "fetch", None)
            if self._media is None:
                fetcher = None
            fetch = fetcher is not None and any(map(_remote, inbound.content.attachments))
            message = await self._store.record_inbound(
                tenant,
                request,
                inbound.update_id,
                inbound.provider_message_id,
                self._clock(),
                echo=inbound.echo,
                announce=not fetch,
            )
            if message is None:
                continue
            if fetch:
                assert fetcher is not None
                message = await self._fetched(fetcher, account, message)
            self._publisher.inbound(message)
            stored.append(message)
        for receipt in received.receipts:
            await self.apply(channel, account, receipt)
        return stored

    async def _fetched(self, fetcher: Fetch, account: str, message: Message) -> Message:
        """``message`` (stored, not yet announced) with its attachments downloaded into our
        media store, announced. A file that cannot be had after :data:`FETCH_ATTEMPTS` tries
        keeps only its reference, and the extension ``media_error`` says why: the message is
        announced all the same."""
        attachments: list[Attachment] = []
        errors: list[str] = []
        for n, attachment in enumerate(message.content.attachments):
            if not _remote(attachment):
                attachments.append(attachment)
                continue
            assert attachment.url is not None
            try:
                media = await self._download(fetcher, account, message.tenant, attachment.url)
            except Exception as exc:  # whatever it is, the file's failure, not the message's
                log.warning("inbound %s attachment %d not downloaded: %s", message.id, n, exc)
                errors.append(f"attachments[{n}]: {exc}")
                attachments.append(attachment)
                continue
            attachments.append(
                replace(
                    attachment,
                    media_id=media.id,
                    mime_type=attachment.mime_type or media.mime_type,
                    filename=attachment.filename or media.filename,
                )
            )
        content = replace(message.content, attachments=tuple(attachments))
        if errors:
            extensions = dict(content.extensions) | {"media_error": "; ".join(errors)}
            content = replace(content, extensions=tuple(sorted(extensions.items())))
        return await self._store.announce_inbound(
            message.tenant, message.id, content, self._clock()
        )

    async def _download(self, fetcher: Fetch, account: str, tenant: str, reference: str) -> Media:
        assert self._media is not None
        wait = self._fetch_backoff
        for attempt in range(1, FETCH_ATTEMPTS + 1):
            try:
                return await fetcher(account, reference, tenant, self._media)
            except RetryableDelivery as exc:
                if attempt == FETCH_ATTEMPTS:
                    raise
                await asyncio.sleep(min(exc.retry_after or wait, _LONGEST_WAIT))
                wait *= 2
        raise AssertionError("unreachable")

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


def _remote(attachment: Attachment) -> bool:
    """Named by the provider only (not yet in our media store)."""
    return attachment.url is not None and attachment.media_id is None
