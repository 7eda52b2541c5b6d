"""WhatsApp's outbound side over the Cloud API
(``POST /{version}/{PHONE_NUMBER_ID}/messages`` with a Bearer token).

Each part of a message is one call (text; each attachment; a location; a template; reply
buttons or a list), in order, every one carrying our message id in
``biz_opaque_callback_data`` (it comes back on the status webhooks) and, for the first, the
reply ``context``. A message's first part's ``wamid`` is its provider id.

Uploads (``media_id``) go to ``/{PHONE_NUMBER_ID}/media`` first, within WhatsApp's limits per
kind (:data:`MAX_BYTES`); the message then names the uploaded id.

Errors by Graph ``code`` (:data:`RULES`): throughput (130429, 80007, 4) holds the phone number
for ``PACE_SECONDS`` and is retried (130429 twice within the send, after the hold; then, and
the others at once, by the dispatcher); the pair rate (131056) holds that recipient for
``PAIR_INTERVAL``; 131047 (outside the 24 h window: send a template), 131026, 131051, 368,
131048, 131049 fail the message; 190 (the token) pauses the account: its messages wait
(:class:`~chat4all.errors.AccountPaused`, retried without calling Meta) until
:meth:`WhatsAppConnector.resume` (an admin, through the API) or
:meth:`WhatsAppConnector.reload` (its token replaced in the settings); 131000, 131016, 2 and
5xx are retried. Sends are paced per phone number (``RATE`` a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from chat4all.adapters.channels.graph import (
    GRAPH_RULES,
    AccountPaused,
    Action,
    GraphClient,
    GraphFailure,
    Rule,
    Rules,
    Scope,
)
from chat4all.adapters.channels.graph.media import keep
from chat4all.adapters.channels.whatsapp.settings import WhatsAppSettings
from chat4all.domain.model import (
    Attachment,
    Button,
    Contact,
    Conversation,
    Media,
    Menu,
    Message,
)
from chat4all.errors import PermanentDelivery, RetryableDelivery
from chat4all.plugin import ChannelSettings, upload_of
from chat4all.ports import Action as Action_
from chat4all.ports import ActionRequest, MediaStore
from chat4all.service_layer.media import MIB
from opskit.logs import MASKER

__all__ = [
    "WhatsAppConnector",
    "WhatsAppOptions",
    "RULES",
    "MAX_BYTES",
    "NAME",
    "Number",
    "payloads",
]

log = logging.getLogger(__name__)

NAME: Final = "whatsapp"
KIB: Final = 1024

MAX_BYTES: Final[Mapping[str, int]] = {
    "image": 5 * MIB,
    "video": 16 * MIB,
    "audio": 16 * MIB,
    "document": 100 * MIB,
    "sticker": 500 * KIB,  # animated; a static sticker: 100 KB
}
CAPTIONED: Final = frozenset({"image", "video", "document"})
ABSORBED: Final = frozenset({130429})
"""Error codes a send waits out itself (the phone number's throughput) before it raises."""

_TEMPLATE = "send an approved template message instead (the only kind allowed outside the window)"

RULES: Final[Rules] = {
    **GRAPH_RULES,
    130429: Rule(Action.PACE, "throughput limit of the phone number reached"),
    131056: Rule(
        Action.PACE, "pair rate limit: too many messages to this user too fast", scope=Scope.PAIR
    ),
    80007: Rule(Action.PACE, "WhatsApp Business Account rate limit reached"),
    131047: Rule(
        Action.PERMANENT,
        f"more than 24 hours since the user last wrote (re-engagement window closed): {_TEMPLATE}",
    ),
    131026: Rule(
        Action.PERMANENT,
        "message undeliverable: the number is not on WhatsApp, has not accepted the terms, or "
        "runs an old version",
    ),
    131051: Rule(Action.PERMANENT, "unsupported message type"),
    368: Rule(Action.PERMANENT, "the account is temporarily blocked for policy violations"),
    131048: Rule(
        Action.PERMANENT, "spam rate limit hit: too many of this number's messages blocked"
    ),
    131049: Rule(
        Action.PERMANENT,
        "Meta chose not to deliver this marketing message (ecosystem engagement); try later",
    ),
    131000: Rule(Action.RETRY, "something went wrong at WhatsApp"),
    131016: Rule(Action.RETRY, "WhatsApp service temporarily unavailable"),
}

MEDIA_PREFIX: Final = "whatsapp-media:"
"""How an inbound attachment names a WhatsApp media id (its ``url``)."""


@dataclass
class Number:
    """One of our phone numbers as the connector sends from it."""

    phone_number_id: str
    token: str
    rate: float = 80.0
    """Sends a second."""
    next_slot: float = 0.0
    held_until: float = 0.0
    paused: str | None = None
    """Why it is paused (``None``: it is not)."""

    def __post_init__(self) -> None:
        self.lock = asyncio.Lock()


class WhatsAppConnector:
    """:class:`~chat4all.ports.Connector` for WhatsApp; ``numbers`` by our account name."""

    channel = NAME

    def __init__(
        self,
        numbers: Mapping[str, Number],
        client: GraphClient,
        *,
        media: MediaStore | None = None,
        pair_interval: float = 6.0,
        pace_seconds: float = 1.0,
        pause_retry: float = 30.0,
        upload_timeout: float = 300.0,
        absorb: int = 2,
    ) -> None:
        self.numbers = dict(numbers)
        self.client = client
        self.media = media
        self._pair_interval = pair_interval
        self._pace_seconds = pace_seconds
        self._pause_retry = pause_retry
        self._upload_timeout = upload_timeout
        self._absorb = absorb
        """Throughput errors a send waits out itself (paced) before it raises."""
        self._pairs: dict[tuple[str, str], float] = {}
        """(account, recipient) → held until (after a 131056)."""

    async def close(self) -> None:
        await self.client.close()

    # --- pausing --------------------------------------------------------------------------

    def paused(self) -> dict[str, str]:
        """The paused accounts and why."""
        return {name: n.paused for name, n in self.numbers.items() if n.paused is not None}

    def resume(self, account: str, token: str | None = None) -> bool:
        """Resume a paused ``account`` (with its new ``token``, when it was replaced); whether
        it was paused."""
        number = self._number(account)
        if token is not None:
            MASKER.add(token)
            number.token = token
        was, number.paused = number.paused, None
        if was is not None:
            log.warning(
                "WhatsApp account %r resumed%s; its waiting messages go out again",
                account,
                " with a new access token" if token is not None else "",
            )
        return was is not None

    def reload(self, settings: ChannelSettings) -> dict[str, str]:
        """Each configured number's changed access token swapped in (a paused one resumes with
        it); what changed, by account."""
        assert isinstance(settings, WhatsAppSettings)
        changed: dict[str, str] = {}
        for name, config in settings.accounts().items():
            number = self.numbers.get(name)
            token = config.access_token.get_secret_value()
            if number is None or token == number.token:
                continue
            was_paused = self.resume(name, token)
            changed[name] = "resumed with its new token" if was_paused else "new token in use"
        return changed

    def _pause(self, account: str, why: str) -> None:
        number = self.numbers[account]
        if number.paused is None:
            number.paused = why
            log.error(
                "ALERT WhatsApp account %r paused: %s; its messages wait until its access "
                "token is replaced or an admin resumes it",
                account,
                why,
            )

    def _number(self, account: str) -> Number:
        number = self.numbers.get(account)
        if number is None:
            raise PermanentDelivery(
                f"no WhatsApp phone number for account {account!r}; add it to "
                "CHAT4ALL_WHATSAPP_ACCOUNTS"
            )
        return number

    # --- sending --------------------------------------------------------------------------

    async def send(
        self, conversation: Conversation, message: Message, done: tuple[str, ...] = ()
    ) -> str:
        account, to = conversation.account, conversation.recipient
        number = self._number(account)
        bodies = payloads(to, message)
        if not bodies:
            raise PermanentDelivery("WhatsApp has no way to send this content (it is empty)")
        ids = list(done)
        for body in bodies[len(done) :]:
            try:
                ids.append(await self._send_one(account, number, to, message, body))
            except RetryableDelivery as exc:
                if isinstance(exc, AccountPaused):
                    raise AccountPaused(str(exc), account, exc.retry_after, tuple(ids)) from None
                raise RetryableDelivery(str(exc), exc.retry_after, tuple(ids)) from None
            except PermanentDelivery as exc:
                raise PermanentDelivery(str(exc), tuple(ids)) from None
        return ids[0]

    async def _send_one(
        self, account: str, number: Number, to: str, message: Message, body: dict[str, Any]
    ) -> str:
        if body.get("type") in MAX_BYTES and "_upload" in body:
            attachment: Attachment = body.pop("_upload")
            kind = body["type"]
            body[kind]["id"] = await self._upload(account, number, message.tenant, attachment)
        for attempt in range(1 + self._absorb):
            await self._wait_turn(account, number, to)
            token = number.token
            try:
                answer = await self.client.call(
                    "POST", f"{number.phone_number_id}/messages", token, json=body
                )
                break
            except GraphFailure as failure:
                error = self._failed(account, number, to, failure, token)
                # the number's throughput (130429): it holds (the next turn waits that out) and
                # this send tries again within the call, a few times, before the dispatcher's
                # backoff; the account's and the app's rates (80007, 4) go to the dispatcher
                if failure.error.code in ABSORBED and attempt < self._absorb:
                    continue
                raise error from None
        try:
            return str(answer["messages"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise RetryableDelivery(
                f"WhatsApp answered without a message id: {json.dumps(answer)[:200]}"
            ) from None

    async def _wait_turn(self, account: str, number: Number, to: str) -> None:
        """Refuse at once while paused or while the recipient is held (pair rate); else wait for
        the phone number's next slot (after a throughput error: its hold)."""
        now = time.monotonic()
        if number.paused is not None:
            raise AccountPaused(
                f"WhatsApp account {account!r} is paused ({number.paused})",
                account,
                self._pause_retry,
            )
        held = self._pairs.get((account, to), 0.0)
        if held > now:
            raise RetryableDelivery(
                f"WhatsApp pair rate: holding messages to this user for {held - now:.1f} s",
                held - now,
            )
        async with number.lock:
            # after a throughput error the number's sends wait out its hold (paced, not failed)
            now = time.monotonic()
            slot = max(now, number.next_slot, number.held_until)
            number.next_slot = slot + 1.0 / number.rate
        if slot > now:
            await asyncio.sleep(slot - now)

    def _failed(
        self, account: str, number: Number, to: str, failure: GraphFailure, token: str = ""
    ) -> RetryableDelivery | PermanentDelivery:
        """The delivery error of ``failure``; ``token``: the one the call was made with (a 190
        for a token replaced meanwhile does not pause the account again: tried again now)."""
        rule = failure.rule
        if rule.action is Action.PAUSE:
            if token and token != number.token:
                return RetryableDelivery("the access token was replaced during the call", 0.0)
            self._pause(account, f"{failure.error.describe()}")
            return AccountPaused(str(failure), account, self._pause_retry)
        if rule.action is Action.PACE:
            if rule.scope is Scope.PAIR:
                self._pairs[(account, to)] = time.monotonic() + self._pair_interval
                return RetryableDelivery(str(failure), self._pair_interval)
            number.held_until = time.monotonic() + self._pace_seconds
            return RetryableDelivery(str(failure), self._pace_seconds)
        exc = failure.delivery(account)
        assert isinstance(exc, RetryableDelivery | PermanentDelivery)
        return exc

    # --- media ----------------------------------------------------------------------------

    async def _upload(
        self, account: str, number: Number, tenant: str, attachment: Attachment
    ) -> str:
        assert attachment.media_id is not None
        kind = attachment.kind or "document"
        opened = upload_of(self.media, tenant, attachment.media_id, "WhatsApp media upload")
        async with opened as (media, data):
            limit = MAX_BYTES.get(kind, MAX_BYTES["document"])
            if media.size > limit:
                raise PermanentDelivery(
                    f"WhatsApp takes a {kind} of at most {limit // KIB} KB; this one is "
                    f"{media.size // KIB} KB: send it as a document or a link"
                )
            mime = attachment.mime_type or media.mime_type
            name = attachment.filename or media.filename
            await self._wait_turn(account, number, "")
            try:
                answer = await self.client.call(
                    "POST",
                    f"{number.phone_number_id}/media",
                    number.token,
                    data={"messaging_product": "whatsapp", "type": mime},
                    files={"file": (name, data, mime)},
                    timeout=self._upload_timeout,
                )
            except GraphFailure as failure:
                raise self._failed(account, number, "", failure) from None
        media_id = answer.get("id")
        if not isinstance(media_id, str):
            raise RetryableDelivery("WhatsApp media upload answered without an id")
        return media_id

    @contextlib.asynccontextmanager
    async def download(
        self, account: str, media_id: str
    ) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        """An inbound media id's bytes: its URL resolved with ``GET /{media_id}``, then
        fetched with the Bearer token; yields its MIME type and the bytes, streamed."""
        number = self._number(account)
        try:
            info = await self.client.call("GET", media_id, number.token)
            url = info.get("url")
            if not isinstance(url, str):
                raise PermanentDelivery(f"WhatsApp media {media_id}: no url in {sorted(info)}")
            async with self.client.download(url, number.token) as (served, chunks):
                yield str(info.get("mime_type") or served), chunks
        except GraphFailure as failure:
            raise failure.delivery(account) from None

    async def fetch(self, account: str, media_id: str, tenant: str, store: MediaStore) -> Media:
        """An inbound media id (``whatsapp-media:<id>`` as the webhook's attachment names it,
        or the bare id) downloaded into ``store`` for ``tenant``, streamed (never whole in
        memory); the core calls it for each inbound attachment (see
        :class:`~chat4all.plugin.MediaConnector`)."""
        media_id = media_id.removeprefix(MEDIA_PREFIX)
        async with self.download(account, media_id) as (mime, chunks):
            return await keep(store, tenant, f"whatsapp-{media_id}", mime, chunks)

    # --- actions --------------------------------------------------------------------------

    async def act(self, conversation: Conversation, request: ActionRequest) -> None:
        """``mark_read``: the latest message the recipient sent us, read; ``typing_on``: the
        same with the typing indicator (WhatsApp shows it only on a message marked read, until
        we answer or for 25 s). ``typing_off`` is not WhatsApp's (it is not declared)."""
        if request.action not in (Action_.MARK_READ, Action_.TYPING_ON):
            raise PermanentDelivery(f"WhatsApp has no {request.action.value} action")
        if request.last_inbound is None:
            raise PermanentDelivery(
                "WhatsApp marks a received message read, and this conversation has none yet"
            )
        await self.mark_read(
            conversation.account,
            request.last_inbound,
            typing=request.action is Action_.TYPING_ON,
        )

    async def mark_read(self, account: str, provider_message_id: str, typing: bool = False) -> None:
        """Mark an inbound message read (the blue ticks), with the typing indicator (shown
        until we answer, or 25 s) when ``typing``."""
        number = self._number(account)
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": provider_message_id,
        }
        if typing:
            body["typing_indicator"] = {"type": "text"}
        try:
            await self.client.call(
                "POST", f"{number.phone_number_id}/messages", number.token, json=body
            )
        except GraphFailure as failure:
            raise self._failed(account, number, "", failure) from None


def payloads(to: str, message: Message) -> list[dict[str, Any]]:
    """The Cloud API request bodies of ``message``, in order (an upload's body carries the
    attachment under ``_upload`` until it is uploaded)."""
    content = message.content
    options = WhatsAppOptions.model_validate(content.options.get(NAME, {}))
    base: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
    }
    bodies: list[dict[str, Any]] = []

    def add(kind: str, value: Any) -> None:
        bodies.append({**base, "type": kind, kind: value})

    if content.reaction is not None:
        target = content.reaction.provider_message_id
        if not target:
            raise PermanentDelivery(
                "WhatsApp reacts to a message by its wamid, and the message reacted to has none "
                "(it was not sent through WhatsApp, or not yet)"
            )
        add("reaction", {"message_id": target, "emoji": content.reaction.emoji})
    if content.contacts:
        add("contacts", [_contact(c) for c in content.contacts])
    if content.template is not None:
        template = content.template
        value: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
        if template.parameters:
            value["components"] = [
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": p} for p in template.parameters],
                }
            ]
        add("template", value)
    if content.menu is not None:
        add("interactive", _list(content.text or "", content.menu))
    elif content.buttons:
        add("interactive", _buttons(content.text or "", content.buttons))
    elif content.text:
        add("text", {"body": content.text, "preview_url": options.preview_url})
    for attachment in content.attachments:
        kind = attachment.kind or "document"
        media: dict[str, Any] = {}
        if attachment.media_id is None:
            media["link"] = attachment.url
        if attachment.caption and kind in CAPTIONED:
            media["caption"] = attachment.caption
        if kind == "document" and attachment.filename:
            media["filename"] = attachment.filename
        add(kind, media)
        if attachment.media_id is not None:
            bodies[-1]["_upload"] = attachment
    if content.location is not None:
        loc = content.location
        where: dict[str, Any] = {"latitude": loc.latitude, "longitude": loc.longitude}
        if loc.name:
            where["name"] = loc.name
        add("location", where)
    for n, body in enumerate(bodies):
        if body["type"] != "reaction":
            body["biz_opaque_callback_data"] = message.id
            if n == 0 and content.reply_to_provider_id:
                body["context"] = {"message_id": content.reply_to_provider_id}
    return bodies


def _contact(contact: Contact) -> dict[str, Any]:
    first, _, last = contact.name.partition(" ")
    name: dict[str, str] = {"formatted_name": contact.name, "first_name": first}
    if last:
        name["last_name"] = last
    card: dict[str, Any] = {"name": name}
    if contact.phones:
        card["phones"] = [{"phone": p} for p in contact.phones]
    if contact.emails:
        card["emails"] = [{"email": e} for e in contact.emails]
    if contact.organization:
        card["org"] = {"company": contact.organization}
    if contact.urls:
        card["urls"] = [{"url": u} for u in contact.urls]
    return card


def _list(text: str, menu: Menu) -> dict[str, Any]:
    return {
        "type": "list",
        "body": {"text": text or " "},
        "action": {
            "button": menu.button,
            "sections": [
                {
                    **({"title": s.title} if s.title else {}),
                    "rows": [
                        {
                            "id": r.id,
                            "title": r.title,
                            **({"description": r.description} if r.description else {}),
                        }
                        for r in s.rows
                    ],
                }
                for s in menu.sections
            ],
        },
    }


def _buttons(text: str, buttons: tuple[Button, ...]) -> dict[str, Any]:
    body = {"text": text or " "}
    links = [b for b in buttons if b.url]
    if links:
        return {
            "type": "cta_url",
            "body": body,
            "action": {
                "name": "cta_url",
                "parameters": {"display_text": links[0].title, "url": links[0].url},
            },
        }
    return {
        "type": "button",
        "body": body,
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": b.payload or b.title, "title": b.title}}
                for b in buttons
            ]
        },
    }


class WhatsAppOptions(BaseModel):
    """WhatsApp's typed options (``content.options.whatsapp``)."""

    model_config = ConfigDict(extra="forbid")
    preview_url: bool = False
    """Render a preview of the first URL in the text."""
