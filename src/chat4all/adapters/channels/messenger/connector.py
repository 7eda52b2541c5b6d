"""Outbound over the Send API (Messenger) or Instagram's messaging API: the
:class:`~chat4all.ports.Connector` for both, told apart by their :class:`Platform`.

Each part of a message is one ``POST /{version}/{ID}/messages`` with the account's token as a
Bearer header (never in a URL, so never in a log). An upload (``media_id``) goes once through
``POST /{version}/{ID}/message_attachments`` (multipart, ``is_reusable``) and is sent by its
``attachment_id``, remembered for the next message that sends the same upload. Errors: see
:mod:`~chat4all.adapters.channels.messenger.errors`; a 190 (the token) pauses the account:
its messages wait (:class:`~chat4all.errors.AccountPaused`, without calling Meta) until an admin
resumes it (:meth:`SendApiConnector.resume`) or its token is replaced in the settings
(:meth:`SendApiConnector.reload`). Inbound attachments (the CDN URL in the webhook's
``payload.url``) are downloaded into our media store by :meth:`SendApiConnector.fetch`.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import urlsplit

from chat4all.adapters.channels.graph import DEFAULT_TIMEOUT, GraphClient, GraphFailure
from chat4all.adapters.channels.graph import Action as Rule
from chat4all.adapters.channels.graph.media import keep
from chat4all.adapters.channels.messenger.errors import SEND_API_RULES
from chat4all.adapters.channels.messenger.platform import Platform
from chat4all.adapters.channels.messenger.sendapi import Part, parts
from chat4all.adapters.channels.messenger.settings import SendApiAccount
from chat4all.domain.model import Conversation, Media, Message
from chat4all.errors import (
    AccountPaused,
    DeliveryError,
    InvalidRequest,
    PermanentDelivery,
    RetryableDelivery,
)
from chat4all.plugin import ChannelSettings, upload_of
from chat4all.ports import Action, ActionRequest, MediaStore
from opskit.logs import MASKER

__all__ = ["SendApiConnector", "Credentials", "SENDER_ACTIONS"]

log = logging.getLogger(__name__)

SENDER_ACTIONS: Final = {
    Action.TYPING_ON: "typing_on",
    Action.TYPING_OFF: "typing_off",
    Action.MARK_READ: "mark_seen",
}


@dataclass(frozen=True, slots=True)
class Credentials:
    """One account: its provider id (Page id, Instagram account id) and its token."""

    provider_id: str
    token: str


class SendApiConnector:
    def __init__(
        self,
        platform: Platform,
        accounts: Mapping[str, Credentials],
        *,
        api_url: str,
        version: str,
        media: MediaStore | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        upload_timeout: float = 120.0,
    ) -> None:
        self.platform = platform
        self.channel = platform.channel
        self._accounts = dict(accounts)
        self._media = media
        self._graph = GraphClient(
            api_url,
            version,
            where=platform.title,
            rules=SEND_API_RULES,
            timeout=timeout,
        )
        self._upload_timeout = upload_timeout
        self._uploaded: dict[tuple[str, str, str], str] = {}
        """(account, tenant, media id) → reusable attachment_id."""
        self._paused: dict[str, str] = {}
        """Paused accounts (their token refused) and why."""

    async def close(self) -> None:
        await self._graph.close()

    # --- pausing --------------------------------------------------------------------------

    def paused(self) -> dict[str, str]:
        """The paused accounts and why."""
        return dict(self._paused)

    def resume(self, account: str, token: str | None = None) -> bool:
        """Resume a paused ``account`` (with its new ``token``, when given); whether it was
        paused."""
        current = self._account(account)
        if token is not None:
            MASKER.add(token)
            self._accounts[account] = replace(current, token=token)
        was = self._paused.pop(account, None)
        if was is not None:
            log.warning(
                "%s account %r resumed%s; its waiting messages go out again",
                self.platform.title,
                account,
                " with a new access token" if token is not None else "",
            )
        return was is not None

    def reload(self, settings: ChannelSettings) -> dict[str, str]:
        """Each configured account's changed token swapped in (a paused one resumes with it);
        what changed, by account."""
        changed: dict[str, str] = {}
        for name, config in settings.accounts().items():
            current = self._accounts.get(name)
            if current is None or not isinstance(config, SendApiAccount):
                continue
            token = config.token.get_secret_value()
            if token != current.token:
                was_paused = self.resume(name, token)
                changed[name] = "resumed with its new token" if was_paused else "new token in use"
        return changed

    def _failed(
        self, name: str, used: Credentials, failure: GraphFailure, done: tuple[str, ...] = ()
    ) -> DeliveryError:
        """The delivery error of ``failure``; a 190 pauses the account, unless the token it
        refused was replaced during the call (then: tried again at once)."""
        if failure.rule.action is Rule.PAUSE:
            if self._account(name).token != used.token:
                return RetryableDelivery("the access token was replaced during the call", 0.0, done)
            if name not in self._paused:
                self._paused[name] = failure.error.describe()
                log.error(
                    "ALERT %s account %r paused: %s; its messages wait until its access token "
                    "is replaced or an admin resumes it",
                    self.platform.title,
                    name,
                    self._paused[name],
                )
        return failure.delivery(name, done)

    def _unpaused(self, name: str) -> Credentials:
        """``name``'s credentials; :class:`AccountPaused` at once while it is paused."""
        account = self._account(name)
        why = self._paused.get(name)
        if why is not None:
            raise AccountPaused(f"{self.platform.title} account {name!r} is paused ({why})", name)
        return account

    def _account(self, name: str) -> Credentials:
        account = self._accounts.get(name)
        if account is None:
            raise PermanentDelivery(
                f"no {self.platform.title} account {name!r}; add it to "
                f"CHAT4ALL_{self.platform.channel.upper()}_ACCOUNTS"
            )
        return account

    async def send(
        self, conversation: Conversation, message: Message, done: tuple[str, ...] = ()
    ) -> str:
        """Each part in order; the first ``len(done)`` reached the platform in an earlier
        attempt and are not sent again. Returns the first part's ``message_id`` (mid)."""
        account = self._unpaused(conversation.account)
        try:
            todo = parts(self.platform, conversation.recipient, message)
        except InvalidRequest as exc:
            raise PermanentDelivery(f"{self.platform.title}: {exc}") from None
        if not todo:
            raise PermanentDelivery(f"{self.platform.title} has no way to send this content")
        ids = list(done)
        for part in todo[len(done) :]:
            try:
                ids.append(await self._send_part(conversation, message, account, part))
            except GraphFailure as exc:
                raise self._failed(conversation.account, account, exc, tuple(ids)) from None
            except DeliveryError as exc:
                exc.done = tuple(ids)
                raise
        return ids[0]

    async def _send_part(
        self, conversation: Conversation, message: Message, account: Credentials, part: Part
    ) -> str:
        body = part.body
        if part.upload is not None:
            attachment_id = await self._upload(conversation.account, message.tenant, part, account)
            body["message"]["attachment"]["payload"] = {"attachment_id": attachment_id}
        doc = await self._post(account, "messages", json=body)
        if "sender_action" in body:  # a reaction: answered without a message id
            return f"{body['sender_action']}:{body['payload']['message_id']}"
        mid = doc.get("message_id")
        if not isinstance(mid, str) or not mid:
            raise PermanentDelivery(f"{self.platform.title} messages: answer without message_id")
        return mid

    async def act(self, conversation: Conversation, request: ActionRequest) -> None:
        """Typing on or off, or mark-as-read: ``sender_action`` ``typing_on``, ``typing_off``,
        ``mark_seen``."""
        account = self._unpaused(conversation.account)
        action = SENDER_ACTIONS[request.action]
        body = {"recipient": {"id": conversation.recipient}, "sender_action": action}
        try:
            await self._post(account, "messages", json=body)
        except GraphFailure as exc:
            raise self._failed(conversation.account, account, exc) from None

    async def fetch(self, account: str, reference: str, tenant: str, store: MediaStore) -> Media:
        """An inbound attachment (``reference``: the CDN URL of its ``payload.url``, signed
        and short-lived) downloaded into ``store`` for ``tenant``, streamed. The URL carries
        its own authorisation: no token is sent to the CDN."""
        self._account(account)
        if not reference.startswith(("https://", "http://")):
            raise PermanentDelivery(f"{self.platform.title} attachment: not a URL")
        stem = posixpath.splitext(posixpath.basename(urlsplit(reference).path))[0]
        name = f"{self.channel}-{stem or 'attachment'}"
        try:
            async with self._graph.download(reference, None) as (mime, chunks):
                return await keep(store, tenant, name, mime, chunks)
        except GraphFailure as exc:
            raise exc.delivery(account) from None

    async def _upload(self, name: str, tenant: str, part: Part, account: Credentials) -> str:
        attachment = part.upload
        assert attachment is not None
        assert attachment.media_id is not None
        key = (name, tenant, attachment.media_id)
        if key in self._uploaded:
            return self._uploaded[key]
        kind = part.body["message"]["attachment"]["type"]
        described = {"attachment": {"type": kind, "payload": {"is_reusable": True}}}
        what = f"{self.platform.title} message_attachments"
        async with upload_of(self._media, tenant, attachment.media_id, what) as (media, data):
            filename = attachment.filename or media.filename
            mime = attachment.mime_type or media.mime_type
            doc = await self._post(
                account,
                "message_attachments",
                data={"message": json.dumps(described, separators=(",", ":"))},
                files={"filedata": (filename, data, mime)},
                timeout=self._upload_timeout,
            )
        attachment_id = doc.get("attachment_id")
        if not isinstance(attachment_id, str) or not attachment_id:
            raise PermanentDelivery(
                f"{self.platform.title} message_attachments: answer without attachment_id"
            )
        self._uploaded[key] = attachment_id
        return attachment_id

    async def _post(
        self,
        account: Credentials,
        edge: str,
        *,
        json: Any = None,
        data: dict[str, str] | None = None,
        files: dict[str, tuple[str, Any, str]] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        return await self._graph.call(
            "POST",
            f"{account.provider_id}/{edge}",
            account.token,
            json=json,
            data=data,
            files=files,
            timeout=timeout,
        )
