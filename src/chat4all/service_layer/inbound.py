"""Use cases on what providers push to us: normalise, deduplicate, store, announce."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from chat4all.adapters.channels.telegram import parse_update
from chat4all.domain.model import (
    Channel,
    DeliveryStatus,
    Message,
    message_document,
    status_document,
)
from chat4all.errors import AuthError, InvalidRequest, NotFound
from chat4all.ports import SendRequest, WebhookReply, WebhookRequest
from chat4all.service_layer.accounts import Accounts
from chat4all.service_layer.events import EventBus

__all__ = ["Inbound", "InboundStore"]

_TELEGRAM_SECRET_HEADER: Final = "x-telegram-bot-api-secret-token"
_OK: Final = WebhookReply(200, b'{"ok":true}')


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
        bus: EventBus,
        accounts: Accounts,
        clock: Callable[[], float] = time.time,
        *,
        telegram_secret: str | None = None,
    ) -> None:
        """``telegram_secret``: what Telegram must send in X-Telegram-Bot-Api-Secret-Token
        (set with setWebhook); ``None`` refuses every Telegram webhook call."""
        self._store = store
        self._bus = bus
        self._accounts = accounts
        self._clock = clock
        self._telegram_secret = telegram_secret

    async def webhook(self, channel: str, account: str, request: WebhookRequest) -> WebhookReply:
        """A provider's call to ``/v1/channels/{channel}/{account}/webhook``: check who sent
        it, parse it, record what it carries. :class:`NotFound` for a channel or account not
        configured here, :class:`AuthError` for a bad signature or secret,
        :class:`InvalidRequest` for a body that cannot be parsed."""
        if channel != Channel.TELEGRAM.value:
            self._accounts.owner(channel, account)  # NotFound for an unknown channel or account
            raise NotFound(f"the {channel} channel takes no webhook calls")
        if request.method != "POST":
            raise NotFound("Telegram delivers updates by POST only")
        presented = request.headers.get(_TELEGRAM_SECRET_HEADER, "")
        if not self._telegram_secret or not hmac.compare_digest(
            presented.encode(), self._telegram_secret.encode()
        ):
            raise AuthError("wrong or missing X-Telegram-Bot-Api-Secret-Token")
        try:
            update = json.loads(request.body)
        except ValueError:
            raise InvalidRequest("the body is not JSON (a Bot API Update)", "body") from None
        if not isinstance(update, dict):
            raise InvalidRequest("the body is not a Bot API Update object", "body")
        await self.telegram_update(account, update)
        return _OK

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
            self._bus.publish(tenant, "message.inbound", message_document(message))
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
            self._bus.publish(
                message.tenant, "message.status", status_document(message, status.value, None)
            )
        return message
