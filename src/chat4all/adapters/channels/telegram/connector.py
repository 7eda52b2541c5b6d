"""Telegram's outbound side over the Bot API (https://core.telegram.org/bots/api).

``sendMessage`` for text (with an inline keyboard for buttons, ``reply_parameters``
for replies), ``sendPhoto`` / ``sendDocument`` / ``sendVideo`` / ``sendAudio`` for
attachments (by URL as JSON; an upload, ``media_id``, as multipart/form-data with the file's
bytes read through the :class:`~chat4all.ports.MediaStore`), ``sendLocation`` for a location.
A message with several parts sends them in order and reports the first part's ``message_id``.

Errors, as the Bot API documents them (``{"ok": false, "error_code", "description",
"parameters": {"retry_after"}}``):

- 429 → :class:`RetryableDelivery` after ``parameters.retry_after`` seconds;
- 401, 403 (bot blocked, kicked, token revoked) and other 4xx → :class:`PermanentDelivery`;
- 5xx, timeouts, connection errors → :class:`RetryableDelivery`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiohttp

from chat4all.domain.model import Attachment, Conversation, Message, Reaction
from chat4all.errors import PermanentDelivery, RetryableDelivery
from chat4all.plugin import upload_of
from chat4all.ports import Action, ActionRequest, MediaStore

__all__ = ["TelegramConnector", "DEFAULT_API", "NAME"]

NAME: Final = "telegram"
DEFAULT_API: Final = "https://api.telegram.org"
_JSON: Final = {"Content-Type": "application/json"}
_MEDIA: Final = {
    "image": ("sendPhoto", "photo"),
    "video": ("sendVideo", "video"),
    "audio": ("sendAudio", "audio"),
    "document": ("sendDocument", "document"),
    "sticker": ("sendSticker", "sticker"),
}


class TelegramConnector:
    """:class:`~chat4all.ports.Connector` for Telegram; ``tokens`` maps our account names
    (``Conversation.account``) to bot tokens."""

    channel = NAME

    def __init__(
        self,
        tokens: dict[str, str],
        *,
        api_url: str = DEFAULT_API,
        timeout: float = 15.0,
        connections: int = 64,
        upload_timeout: float = 120.0,
        media: MediaStore | None = None,
    ) -> None:
        self._tokens = tokens
        self._media = media
        self.api_url = api_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        # Telegram answers an upload once it has processed the file: allow it longer.
        self._upload_timeout = aiohttp.ClientTimeout(total=upload_timeout)
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

    async def send(
        self, conversation: Conversation, message: Message, done: tuple[str, ...] = ()
    ) -> str:
        """Each part in order (text, files, location), one Bot API call each; the first
        ``len(done)`` parts reached Telegram in an earlier attempt and are not sent again."""
        token = self._tokens.get(conversation.account)
        if token is None:
            raise PermanentDelivery(
                f"no bot token for Telegram account {conversation.account!r}; add it to "
                "CHAT4ALL_TELEGRAM_ACCOUNTS"
            )
        parts = self._parts(token, conversation.recipient, message)
        if not parts:
            raise PermanentDelivery(
                "Telegram has no way to send this content (templates are WhatsApp's)"
            )
        ids = list(done)
        for part in parts[len(done) :]:
            try:
                ids.append(await part())
            except RetryableDelivery as exc:
                raise RetryableDelivery(str(exc), exc.retry_after, tuple(ids)) from None
            except PermanentDelivery as exc:
                raise PermanentDelivery(str(exc), tuple(ids)) from None
        return ids[0]

    def _parts(self, token: str, chat: str, message: Message) -> list[Callable[[], Awaitable[str]]]:
        content = message.content
        extra = dict(content.extensions)
        markup = _keyboard(content.buttons) if content.buttons else None
        parts: list[Callable[[], Awaitable[str]]] = []
        if content.reaction is not None:
            parts.append(functools.partial(self._react, token, chat, content.reaction))
        if content.text:
            body: dict[str, Any] = {"chat_id": chat, "text": content.text, **extra}
            if markup and not content.attachments:
                body["reply_markup"] = markup
            if content.reply_to_provider_id is not None:
                body["reply_parameters"] = {"message_id": int(content.reply_to_provider_id)}
            parts.append(functools.partial(self._call, token, "sendMessage", body))
        for n, attachment in enumerate(content.attachments):
            keyboard = markup if n == len(content.attachments) - 1 else None
            if attachment.media_id is not None:
                parts.append(
                    functools.partial(
                        self._upload, token, message.tenant, chat, attachment, keyboard
                    )
                )
            else:
                parts.append(
                    functools.partial(self._call, token, *_media(chat, attachment, keyboard))
                )
        if content.location is not None:
            loc = content.location
            location = {"chat_id": chat, "latitude": loc.latitude, "longitude": loc.longitude}
            parts.append(functools.partial(self._call, token, "sendLocation", location))
        return parts

    async def _react(self, token: str, chat: str, reaction: Reaction) -> str:
        """``setMessageReaction`` on the message reacted to (an empty emoji: no reaction, which
        removes ours); reports ``reaction:<its message_id>`` (Telegram answers ``true``)."""
        target = reaction.provider_message_id
        if target is None:
            raise PermanentDelivery(
                f"the message {reaction.message_id} reacted to never reached Telegram"
            )
        emoji = [{"type": "emoji", "emoji": reaction.emoji}] if reaction.emoji else []
        body = {"chat_id": chat, "message_id": int(target), "reaction": emoji}
        await self._call(token, "setMessageReaction", body)
        return f"reaction:{target}"

    async def act(self, conversation: Conversation, request: ActionRequest) -> None:
        """``typing_on``: ``sendChatAction`` with ``typing`` (Telegram shows it for 5 seconds
        or until the bot's next message); ``typing_off``: nothing to call (Telegram has no way
        to clear it early). Mark-read is not declared: the Bot API has no read receipts."""
        token = self._tokens.get(conversation.account)
        if token is None:
            raise PermanentDelivery(
                f"no bot token for Telegram account {conversation.account!r}; add it to "
                "CHAT4ALL_TELEGRAM_ACCOUNTS"
            )
        if request.action is Action.TYPING_ON:
            body = {"chat_id": conversation.recipient, "action": "typing"}
            await self._call(token, "sendChatAction", body)
        elif request.action is not Action.TYPING_OFF:
            raise PermanentDelivery(f"Telegram has no {request.action.value}")

    async def _upload(
        self,
        token: str,
        tenant: str,
        chat: str,
        attachment: Attachment,
        markup: dict[str, Any] | None,
    ) -> str:
        """An uploaded file, sent as the Bot API takes uploads: multipart/form-data with the
        file in the method's field and every other parameter a form field (JSON-serialised
        where it is an object)."""
        assert attachment.media_id is not None
        method, field = _MEDIA.get(attachment.kind or "document", _MEDIA["document"])
        form = {"chat_id": chat}
        if attachment.caption:
            form["caption"] = attachment.caption
        if markup:
            form["reply_markup"] = json.dumps(markup, separators=(",", ":"))
        opened = upload_of(self._media, tenant, attachment.media_id, f"Telegram {method}")
        async with opened as (media, data):
            name = attachment.filename or media.filename
            mime = attachment.mime_type or media.mime_type
            return await self._call(token, method, form, files={field: (name, data, mime)})

    async def _call(
        self,
        token: str,
        method: str,
        body: dict[str, Any],
        files: dict[str, tuple[str, Any, str]] | None = None,
    ) -> str:
        """One Bot API call: JSON, or multipart/form-data when it carries ``files``
        (``{field: (filename, file object, type)}``)."""
        url = f"{self.api_url}/bot{token}/{method}"
        try:
            if files is None:
                request = self._http().post(
                    url, data=json.dumps(body, separators=(",", ":")), headers=_JSON
                )
            else:
                form = aiohttp.FormData()
                for key, value in body.items():
                    form.add_field(key, str(value))
                for key, (filename, data, mime) in files.items():
                    form.add_field(key, data, filename=filename, content_type=mime)
                request = self._http().post(url, data=form, timeout=self._upload_timeout)
            async with request as answer:
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
            result = doc["result"]
            return str(result["message_id"]) if isinstance(result, dict) else str(result)
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
    method, field = _MEDIA.get(attachment.kind or "document", _MEDIA["document"])
    body: dict[str, Any] = {"chat_id": chat, field: attachment.url}
    if attachment.caption:
        body["caption"] = attachment.caption
    if markup:
        body["reply_markup"] = markup
    return method, body
