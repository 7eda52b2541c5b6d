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
from chat4all.errors import InvalidRequest, NotFound, RetryableDelivery, StoreUnavailable
from chat4all.plugin import Receipt, Received, Receiver
from chat4all.ports import MediaStore, Pending, SendRequest, WebhookReply, WebhookRequest
from chat4all.service_layer.accounts import Accounts
from opskit.lifecycle import sleep_or_stop

__all__ = [
    "Inbound",
    "InboundStore",
    "Outcome",
    "RECEIPT_STATUSES",
    "FETCH_ATTEMPTS",
    "PENDING_AFTER",
]

log = logging.getLogger(__name__)

_LONGEST_WAIT: Final = 5.0
"""Seconds between two tries at most (the provider may ask for longer: the file is then
given up, the message kept)."""

Fetch = Callable[[str, str, str, MediaStore], Awaitable[Media]]
"""A :class:`~chat4all.plugin.MediaConnector`'s ``fetch``."""

FETCH_ATTEMPTS: Final = 3
"""Tries to download an inbound attachment (a retryable failure waits, then tries again)."""

PENDING_AFTER: Final = 60.0
"""Seconds after which a received message still not announced is taken to be left behind by a
process that died while downloading its files."""

SWEEP_EVERY: Final = 30.0
"""Seconds between two looks for such messages (the ``inbound-files`` worker)."""


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
    ) -> Message | None: ...

    async def pending_inbound(self, before: float, limit: int = 100) -> list[Pending]: ...

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
        self._tasks: set[asyncio.Task[None]] = set()
        """The downloads under way, each of a message stored and not yet announced."""
        self._store = store
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
            fetch = (
                self._media is not None
                and hasattr(self._connectors.get(channel), "fetch")
                and any(map(_remote, inbound.content.attachments))
            )
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
            stored.append(message)
            if fetch:
                # stored: the provider gets its answer now; the files come after it
                self._later(Pending(channel, account, message))
        for receipt in received.receipts:
            await self.apply(channel, account, receipt)
        return stored

    def _later(self, pending: Pending) -> None:
        task = asyncio.create_task(self._complete(pending), name=f"inbound-{pending.message.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _complete(self, pending: Pending) -> None:
        """Download ``pending``'s files and announce it (unless another process did first)."""
        try:
            await self._fetched(pending)
        except StoreUnavailable as exc:  # the database cannot answer now: the sweep tries again
            log.warning(
                "inbound %s not announced yet (tried again later): %s", pending.message.id, exc
            )
            return
        except Exception:  # a bug: logged whole, and the sweep tries again
            log.exception("inbound %s not announced yet (tried again later)", pending.message.id)

    async def announce_pending(self, older_than: float = PENDING_AFTER) -> int:
        """Complete the received messages stored more than ``older_than`` s ago and still not
        announced (the process downloading their files died); how many there were."""
        pending = await self._store.pending_inbound(self._clock() - older_than)
        for one in pending:
            log.warning(
                "inbound %s from %s was stored %.0fs ago and not announced: completing it",
                one.message.id,
                one.channel,
                self._clock() - one.message.created_at,
            )
            await self._complete(one)
        return len(pending)

    async def run(self, stop: asyncio.Event) -> None:
        """The ``inbound-files`` worker: :meth:`announce_pending` every :data:`SWEEP_EVERY` s."""
        while not stop.is_set():
            try:
                await self.announce_pending()
            except Exception as exc:  # a busy database now: next round
                log.warning("inbound sweep failed: %s: %s", type(exc).__name__, exc)
            await sleep_or_stop(stop, SWEEP_EVERY)

    async def close(self) -> None:
        """Stop the downloads under way (their messages stay for the sweep)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _fetched(self, pending: Pending) -> Message | None:
        """``pending``'s message with its attachments downloaded into our media store,
        announced (``None``: another process announced it first). A file that cannot be had
        after :data:`FETCH_ATTEMPTS` tries keeps only its reference, and the extension
        ``media_error`` says why: the message is announced all the same."""
        message, account = pending.message, pending.account
        fetcher: Fetch | None = getattr(self._connectors.get(pending.channel), "fetch", None)
        attachments: list[Attachment] = []
        errors: list[str] = []
        for n, attachment in enumerate(message.content.attachments):
            if not _remote(attachment):
                attachments.append(attachment)
                continue
            assert attachment.url is not None
            try:
                media = await self._download(fetcher, account, message.tenant, attachment.url)
            except asyncio.CancelledError:
                raise
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

    async def _download(
        self, fetcher: Fetch | None, account: str, tenant: str, reference: str
    ) -> Media:
        if fetcher is None or self._media is None:  # the channel's settings changed since
            raise NotFound("this channel cannot fetch files here now")
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
        _, outcome = await self._store.apply_receipt(
            channel,
            account,
            DeliveryStatus.SENT,
            self._clock(),
            provider_message_id=provider_message_id,
        )
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
