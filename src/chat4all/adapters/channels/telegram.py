"""The Telegram channel over the Bot API (https://core.telegram.org/bots/api).

Outbound: ``sendMessage`` for text (with an inline keyboard for buttons, ``reply_parameters``
for replies), ``sendPhoto`` / ``sendDocument`` / ``sendVideo`` / ``sendAudio`` by URL for
attachments, ``sendLocation`` for a location. A message with several parts sends them in order
and reports the first part's ``message_id``.

Errors, as the Bot API documents them (``{"ok": false, "error_code", "description",
"parameters": {"retry_after"}}``):

- 429 → :class:`RetryableDelivery` after ``parameters.retry_after`` seconds;
- 401, 403 (bot blocked, kicked, token revoked) and other 4xx → :class:`PermanentDelivery`;
- 5xx, timeouts, connection errors → :class:`RetryableDelivery`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import httpx

from chat4all.domain.model import Attachment, Channel, Content, Conversation, Location, Message
from chat4all.errors import PermanentDelivery, RetryableDelivery
from opskit.lifecycle import sleep_or_stop

__all__ = ["TelegramConnector", "TelegramPoller", "DEFAULT_API", "InboundUpdate", "parse_update"]

log = logging.getLogger(__name__)

DEFAULT_API: Final = "https://api.telegram.org"
_JSON: Final = {"Content-Type": "application/json"}
_MEDIA: Final = {
    "image": ("sendPhoto", "photo"),
    "video": ("sendVideo", "video"),
    "audio": ("sendAudio", "audio"),
    "document": ("sendDocument", "document"),
}


class TelegramConnector:
    """:class:`~chat4all.ports.Connector` for Telegram; ``tokens`` maps our account names
    (``Conversation.account``) to bot tokens."""

    channel = Channel.TELEGRAM

    def __init__(
        self,
        tokens: dict[str, str],
        *,
        api_url: str = DEFAULT_API,
        timeout: float = 15.0,
        connections: int = 64,
    ) -> None:
        self._tokens = tokens
        self.api_url = api_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # aiohttp rather than httpx on this path: one call per message sent, and httpx (anyio,
        # httpcore's pool checks) cost the hub more CPU per message than accepting it did.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._connections),
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, conversation: Conversation, message: Message) -> str:
        token = self._tokens.get(conversation.account)
        if token is None:
            raise PermanentDelivery(
                f"no bot token for Telegram account {conversation.account!r}; add it to "
                "CHAT4ALL_TELEGRAM_BOTS"
            )
        content = message.content
        chat = conversation.recipient
        ids: list[str] = []
        extra = dict(content.extensions)
        markup = _keyboard(content.buttons) if content.buttons else None
        if content.text:
            body: dict[str, Any] = {"chat_id": chat, "text": content.text, **extra}
            if markup and not content.attachments:
                body["reply_markup"] = markup
            ids.append(await self._call(token, "sendMessage", body))
        for n, attachment in enumerate(content.attachments):
            last = n == len(content.attachments) - 1
            ids.append(await self._call(token, *_media(chat, attachment, markup if last else None)))
        if content.location is not None:
            loc = content.location
            ids.append(
                await self._call(
                    token,
                    "sendLocation",
                    {"chat_id": chat, "latitude": loc.latitude, "longitude": loc.longitude},
                )
            )
        if not ids:
            raise PermanentDelivery(
                "Telegram has no way to send this content (templates are WhatsApp's)"
            )
        return ids[0]

    async def _call(self, token: str, method: str, body: dict[str, Any]) -> str:
        try:
            async with self._http().post(
                f"{self.api_url}/bot{token}/{method}",
                data=json.dumps(body, separators=(",", ":")),
                headers=_JSON,
            ) as answer:
                status, reason = answer.status, answer.reason
                raw = await answer.read()
        except TimeoutError as exc:
            raise RetryableDelivery(f"Telegram {method}: timeout ({type(exc).__name__})") from None
        except aiohttp.ClientError as exc:
            raise RetryableDelivery(f"Telegram {method}: {type(exc).__name__}: {exc}") from None
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {}
        if not isinstance(doc, dict):
            doc = {}
        if status == 200 and doc.get("ok"):
            return str(doc["result"]["message_id"])
        description = doc.get("description") or reason
        where = f"Telegram {method}: HTTP {status}: {description}"
        if status == 429:
            retry_after = (doc.get("parameters") or {}).get("retry_after")
            raise RetryableDelivery(
                where, float(retry_after) if isinstance(retry_after, int | float) else None
            )
        if status >= 500:
            raise RetryableDelivery(where)
        raise PermanentDelivery(where)


def _keyboard(buttons: tuple[Any, ...]) -> dict[str, Any]:
    row = [
        {"text": b.title, "url": b.url}
        if b.url
        else {"text": b.title, "callback_data": b.payload or b.title}
        for b in buttons
    ]
    return {"inline_keyboard": [row]}


def _media(
    chat: str, attachment: Attachment, markup: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    method, field = _MEDIA.get(attachment.kind, _MEDIA["document"])
    body: dict[str, Any] = {"chat_id": chat, field: attachment.url}
    if attachment.caption:
        body["caption"] = attachment.caption
    if markup:
        body["reply_markup"] = markup
    return method, body


@dataclass(frozen=True, slots=True)
class InboundUpdate:
    update_id: str
    chat_id: str
    message_id: str
    content: Content


def parse_update(update: dict[str, Any]) -> InboundUpdate | None:
    """A Bot API ``Update`` normalised to the canonical content; ``None`` for update kinds we
    do not handle (edits, callbacks, members ...). Files become references
    ``telegram-file:<file_id>`` (fetch them with getFile)."""
    message = update.get("message")
    if not isinstance(message, dict) or "update_id" not in update:
        return None
    chat = message.get("chat") or {}
    attachments: list[Attachment] = []
    caption = message.get("caption")
    if message.get("photo"):
        largest = message["photo"][-1]
        attachments.append(
            Attachment(f"telegram-file:{largest['file_id']}", "image", caption=caption)
        )
    for key, kind in (
        ("document", "document"),
        ("video", "video"),
        ("audio", "audio"),
        ("voice", "audio"),
    ):
        if isinstance(message.get(key), dict):
            item = message[key]
            attachments.append(
                Attachment(
                    f"telegram-file:{item['file_id']}",
                    kind,
                    filename=item.get("file_name"),
                    mime_type=item.get("mime_type"),
                    caption=caption,
                )
            )
    location = message.get("location")
    extensions: list[tuple[str, str]] = []
    if isinstance(message.get("reply_to_message"), dict):
        extensions.append(("reply_to_provider_id", str(message["reply_to_message"]["message_id"])))
    sender = message.get("from") or {}
    if sender.get("id") is not None:
        extensions.append(("from_id", str(sender["id"])))
    content = Content(
        text=message.get("text"),
        attachments=tuple(attachments),
        location=Location(location["latitude"], location["longitude"]) if location else None,
        extensions=tuple(sorted(extensions)),
    )
    if content.empty:
        return None
    return InboundUpdate(
        str(update["update_id"]), str(chat.get("id")), str(message.get("message_id")), content
    )


class TelegramPoller:
    """The getUpdates alternative to the webhook: long-polls one bot and hands each update to
    ``handle`` (which deduplicates by update_id, so a redelivery after a crash is harmless).

    The offset moves past an update only after ``handle`` returned, so nothing is confirmed to
    Telegram before it is stored.
    """

    def __init__(
        self,
        account: str,
        token: str,
        handle: Callable[[str, dict[str, Any]], Awaitable[object]],
        *,
        api_url: str = DEFAULT_API,
        poll_timeout: int = 25,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._account = account
        self._token = token
        self._handle = handle
        self._poll_timeout = poll_timeout
        self._client = httpx.AsyncClient(
            base_url=api_url.rstrip("/"), timeout=poll_timeout + 10, transport=transport
        )

    async def run(self, stop: asyncio.Event) -> None:
        offset: int | None = None
        backoff = 1.0
        try:
            while not stop.is_set():
                body: dict[str, Any] = {"timeout": self._poll_timeout}
                if offset is not None:
                    body["offset"] = offset
                try:
                    answer = await self._client.post(f"/bot{self._token}/getUpdates", json=body)
                    doc = answer.json()
                except (httpx.HTTPError, ValueError) as exc:
                    log.warning(
                        "telegram %s: getUpdates failed (%s); retrying in %gs",
                        self._account,
                        exc,
                        backoff,
                    )
                    await sleep_or_stop(stop, backoff)
                    backoff = min(backoff * 2, 60.0)
                    continue
                if not doc.get("ok"):
                    log.error(
                        "telegram %s: getUpdates refused (HTTP %d: %s); a webhook may be set "
                        "(deleteWebhook) or the token is wrong; retrying in %gs",
                        self._account,
                        answer.status_code,
                        doc.get("description"),
                        backoff,
                    )
                    await sleep_or_stop(stop, backoff)
                    backoff = min(backoff * 2, 60.0)
                    continue
                backoff = 1.0
                for update in sorted(doc["result"], key=lambda u: u["update_id"]):
                    await self._handle(self._account, update)
                    offset = int(update["update_id"]) + 1
        finally:
            await self._client.aclose()
