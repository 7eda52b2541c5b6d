"""Inbound for Messenger and Instagram: the webhook's handshake, its signature, and each
delivery (a batch: ``entry[]``, each with ``messaging[]``) normalised to the canonical model,
whole.

A delivery is ``{"object": "page" | "instagram", "entry": [{"id", "time", "messaging": [event,
...]}]}``; an event has ``sender.id``, ``recipient.id``, ``timestamp`` and one of

- ``message``: ``mid``, ``text``, ``attachments[{type, payload{url}}]``, ``quick_reply.payload``,
  ``reply_to.mid``, ``is_echo`` (a message the account sent, ``metadata`` our id when we sent
  it: already stored, skipped), ``is_unsupported``, ``is_deleted``;
- ``postback`` (a button pressed): ``mid``, ``title``, ``payload``;
- ``reaction``: ``mid`` (the message reacted to), ``action`` (``react``/``unreact``),
  ``reaction``, ``emoji``;
- ``delivery`` (Messenger's ``message_deliveries``): ``mids``, ``watermark`` (everything sent
  before it is delivered);
- ``read``: ``watermark`` (Messenger: everything before it is read) or ``mid`` (Instagram's
  ``messaging_seen``).

Anything else (optins, referrals, policy notices, standby, ``changes`` of other fields) is
acknowledged and ignored: a payload we do not know never fails the request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from typing import Any, Final

from chat4all.adapters.channels.graph import check_signature, handshake
from chat4all.adapters.channels.messenger.platform import Platform
from chat4all.adapters.channels.messenger.sendapi import METADATA_PREFIX
from chat4all.domain.model import (
    Attachment,
    Content,
    DeliveryStatus,
    Postback,
    PostbackSource,
    Reaction,
)
from chat4all.errors import InvalidRequest
from chat4all.plugin import InboundMessage, Receipt, Received
from chat4all.ports import WebhookRequest

__all__ = ["SendApiReceiver", "parse"]

log = logging.getLogger(__name__)

_KINDS: Final = {"image": "image", "video": "video", "audio": "audio", "file": "document"}


def parse(platform: Platform, body: Any, accounts: Collection[str] | None = None) -> Received:
    """A delivery's messages and receipts (``accounts``: when given, the provider ids whose
    entries are read; Meta sends one app's deliveries for every account it serves).
    :class:`InvalidRequest` when it is not a webhook delivery at all (no ``entry`` list)."""
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        raise InvalidRequest(f"not a {platform.title} webhook delivery: no entry list", "entry")
    if body.get("object") not in (platform.webhook_object, None):
        log.info("%s webhook: object %r ignored", platform.title, body.get("object"))
        return Received()
    messages: list[InboundMessage] = []
    receipts: list[Receipt] = []
    for entry in body["entry"]:
        if not isinstance(entry, dict):
            continue
        if accounts is not None and str(entry.get("id")) not in accounts:
            continue
        for event in entry.get("messaging") or ():
            if not isinstance(event, dict):
                continue
            try:
                _event(event, messages, receipts)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # Meta's payloads grow new shapes: one we cannot read is logged, never fatal.
                log.warning(
                    "%s webhook: an event skipped (%s: %s)", platform.title, type(exc).__name__, exc
                )
    return Received(messages=tuple(messages), receipts=tuple(receipts))


def _event(event: dict[str, Any], messages: list[InboundMessage], receipts: list[Receipt]) -> None:
    sender = str((event.get("sender") or {}).get("id", ""))
    recipient = str((event.get("recipient") or {}).get("id", ""))
    stamp = str(event.get("timestamp", ""))
    message = event.get("message")
    if isinstance(message, dict):
        mid = str(message["mid"])
        if message.get("is_echo"):
            if str(message.get("metadata", "")).startswith(METADATA_PREFIX):
                return  # our own send, stored when we sent it
            content = _message_content(message)
            messages.append(InboundMessage(mid, recipient, mid, content, echo=True))
            return
        if message.get("is_deleted"):
            return
        messages.append(InboundMessage(mid, sender, mid, _message_content(message)))
        return
    postback = event.get("postback")
    if isinstance(postback, dict):
        payload = str(postback.get("payload") or "")
        title = postback.get("title")
        mid = str(postback.get("mid") or f"postback:{sender}:{stamp}")
        pressed = Postback(PostbackSource.POSTBACK, payload, str(title) if title else None)
        messages.append(InboundMessage(mid, sender, mid, Content(postback=pressed)))
        return
    reaction = event.get("reaction")
    if isinstance(reaction, dict):
        target = str(reaction["mid"])
        action = str(reaction.get("action") or "react")
        emoji = "" if action == "unreact" else str(reaction.get("emoji") or reaction["reaction"])
        update = f"reaction:{target}:{sender}:{stamp}:{action}"
        content = Content(reaction=Reaction(None, emoji, provider_message_id=target))
        messages.append(InboundMessage(update, sender, update, content))
        return
    delivery = event.get("delivery")
    if isinstance(delivery, dict):
        for mid in delivery.get("mids") or ():
            receipts.append(Receipt(str(mid), DeliveryStatus.DELIVERED))
        if delivery.get("watermark") is not None:
            receipts.append(_watermark(DeliveryStatus.DELIVERED, delivery["watermark"], sender))
        return
    read = event.get("read")
    if isinstance(read, dict):
        if read.get("mid"):  # Instagram's messaging_seen
            receipts.append(Receipt(str(read["mid"]), DeliveryStatus.READ))
        elif read.get("watermark") is not None:  # Messenger's message_reads
            receipts.append(_watermark(DeliveryStatus.READ, read["watermark"], sender))
        return
    log.debug("webhook event ignored: %s", sorted(event))


def _watermark(status: DeliveryStatus, watermark: Any, recipient: str) -> Receipt:
    """Every message sent to ``recipient`` up to ``watermark`` (milliseconds)."""
    return Receipt("", status, watermark=float(watermark) / 1000, recipient=recipient)


def _message_content(message: dict[str, Any]) -> Content:
    attachments = []
    unknown = []
    for item in message.get("attachments") or ():
        if not isinstance(item, dict):
            continue
        kind = _KINDS.get(str(item.get("type")))
        url = (item.get("payload") or {}).get("url")
        if kind is not None and url:
            attachments.append(Attachment(str(url), kind))
        else:
            unknown.append(str(item.get("type")))
    text = message.get("text")
    quick = message.get("quick_reply")
    postback = None
    if isinstance(quick, dict) and quick.get("payload") is not None:
        title = str(text) if text is not None else None
        postback = Postback(PostbackSource.QUICK_REPLY, str(quick["payload"]), title)
    reply = message.get("reply_to")
    reply_to = str(reply["mid"]) if isinstance(reply, dict) and reply.get("mid") else None
    unsupported = None
    if message.get("is_unsupported"):
        unsupported = "unsupported"
    elif unknown and not (text or attachments):
        unsupported = ",".join(unknown)  # story mentions, shares, reels, like_heart ...
    return Content(
        text=str(text) if text is not None else None,
        attachments=tuple(attachments),
        postback=postback,
        reply_to_provider_id=reply_to,
        unsupported=unsupported,
    )


class SendApiReceiver:
    """The webhook of every account of one platform: the ``GET`` handshake (``hub.mode``
    ``subscribe`` with our verify token: the ``hub.challenge`` echoed, else 403) and signed
    ``POST`` deliveries (``X-Hub-Signature-256``, HMAC-SHA256 of the raw body under the app
    secret, compared in constant time: else 401 and nothing stored)."""

    def __init__(
        self,
        platform: Platform,
        app_secret: str,
        verify_token: str,
        accounts: Mapping[str, str],
    ) -> None:
        """``accounts``: our account name → its provider id (Page id, Instagram id)."""
        self._platform = platform
        self._secret = app_secret
        self._verify = verify_token
        self._accounts = dict(accounts)

    async def webhook(self, account: str, request: WebhookRequest) -> Received:
        if request.method == "GET":
            return Received(reply=handshake(request.query, self._verify))
        check_signature(self._secret, request)
        try:
            body = json.loads(request.body)
        except ValueError:
            raise InvalidRequest("the body is not JSON (a webhook delivery)", "body") from None
        provider_id = self._accounts.get(account)
        return parse(self._platform, body, {provider_id} if provider_id else None)
