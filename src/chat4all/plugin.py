"""What a channel is to the core: the plugin interface every channel package implements.

A channel (a messaging provider: a chat app's bot API, a business messaging platform ...) is
one object, :class:`ChannelPlugin`, found through the :mod:`chat4all.registry`. It declares

- its ``name`` (the string clients send as ``channel``) and its :class:`Limits`;
- its settings model (a :class:`ChannelSettings` read from ``CHAT4ALL_<NAME>_*``), with its
  accounts (each an :class:`AccountSettings`: the tenant it belongs to and its credentials);

and builds, from its settings,

- a :class:`ChannelConnector` (outbound: the :class:`~chat4all.ports.Connector` port; a
  :class:`PausableConnector` when its accounts pause on a refused token);
- a :class:`Receiver` (inbound: a provider's webhook request, signature checked, parsed into
  the canonical model as :class:`Received`, answered with a :class:`~chat4all.ports.WebhookReply`);
- its :class:`Poller` s, if the provider is also polled (most are not: an empty sequence);
- a :class:`Simulator` of the provider's documented API, for ``make run`` and the tests.

The core names no channel: it reads all of this through the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import BinaryIO, Final, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp

from chat4all.domain.model import Content, ContentKind, Conversation, DeliveryStatus, Media
from chat4all.errors import NotFound, PermanentDelivery, RetryableDelivery, StoreUnavailable
from chat4all.ports import ActionRequest, Connector, MediaStore, WebhookReply, WebhookRequest

__all__ = [
    "NAME",
    "SIMULATOR_ACCOUNT",
    "BASE_CONTENT",
    "BASE_ATTACHMENTS",
    "Limits",
    "AccountSettings",
    "ChannelSettings",
    "InboundMessage",
    "Receipt",
    "Received",
    "OK",
    "Deliver",
    "upload_of",
    "ChannelConnector",
    "ActionConnector",
    "MediaConnector",
    "PausableConnector",
    "Receiver",
    "Poller",
    "Fault",
    "Simulator",
    "ChannelPlugin",
]

NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,15}")
"""A channel's name: lower case, a letter first, at most 16 (it is stored in a 16-wide column
and makes the settings prefix ``CHAT4ALL_<NAME>_``)."""

SIMULATOR_ACCOUNT: Final = "sim-bot"
"""The one account each channel has on the embedded default (against its simulator)."""


BASE_CONTENT: Final = frozenset(
    {ContentKind.TEXT, ContentKind.ATTACHMENTS, ContentKind.REPLY, ContentKind.BUTTONS}
)
"""The kinds every channel sent before channels declared theirs (with ``location`` and
``template``, which keep their own flags)."""

BASE_ATTACHMENTS: Final = frozenset({"image", "video", "audio", "document"})
"""The attachment kinds a channel sends unless it says otherwise (stickers: when it says so)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one message may hold on a channel; checked when a message is accepted, never after.

    A kind of content the channel does not declare (:meth:`supports`), or more of one than it
    takes, is refused with a 422 naming the field and the channel's limit."""

    text: int
    """Characters of text."""
    caption: int
    """Characters of an attachment's caption."""
    attachments: int
    """Attachments per message."""
    buttons: int
    kinds: frozenset[str] = BASE_ATTACHMENTS
    """The attachment kinds it sends (of :data:`~chat4all.domain.model.ATTACHMENT_KINDS`)."""
    max_bytes: Mapping[str, int] = field(default_factory=dict)
    """The largest upload (``media_id``) it takes, by kind; a kind not here is bounded only by
    ``CHAT4ALL_MEDIA_MAX_BYTES``."""
    location: bool = True
    """Whether it sends a location."""
    templates: bool = False
    """Whether it sends pre-approved templates."""
    content: frozenset[str] = BASE_CONTENT
    """The :class:`~chat4all.domain.model.ContentKind` s it sends (``location`` and
    ``template`` are the two flags above)."""
    text_bytes: int | None = None
    """Bytes of UTF-8 text, for a channel that counts bytes (``None``: only ``text``)."""
    titles: int = 64
    """Characters of a button's, a menu row's or a quick reply's title (and a menu's button)."""
    descriptions: int = 72
    """Characters of a menu row's description."""
    menu_rows: int = 10
    """Rows of a menu, all sections together."""
    menu_sections: int = 10
    quick_replies: int = 13
    contacts: int = 10
    """Contact cards per message."""
    options: type[BaseModel] | None = None
    """The model of its typed extras (``content.options.<channel>``): validated on accept (422
    on error), shown in the OpenAPI document; ``None``: it takes none."""
    actions: frozenset[str] = frozenset()
    """The :class:`~chat4all.ports.Action` s (typing, mark-read ...) it carries out; any other
    is refused with a 422 naming the channel."""

    def supports(self, kind: str) -> bool:
        """Whether it sends content of ``kind`` (a :class:`~chat4all.domain.model.ContentKind`)."""
        if kind == ContentKind.LOCATION:
            return self.location
        if kind == ContentKind.TEMPLATE:
            return self.templates
        return kind in self.content

    def sends(self) -> tuple[str, ...]:
        """Every kind it sends, sorted (for messages and ``GET /v1/channels``)."""
        return tuple(sorted(k.value for k in ContentKind if self.supports(k)))


class AccountSettings(BaseModel):
    """One account of ours on a channel (a bot, a phone number, a page). A channel's model adds
    its credentials (as :class:`~pydantic.SecretStr`, so they are never printed)."""

    model_config = ConfigDict(extra="forbid")
    tenant: str | None = Field(default=None, min_length=1, max_length=64)
    """The tenant it belongs to; ``None``: ``CHAT4ALL_DEFAULT_TENANT``."""


class ChannelSettings(BaseSettings):
    """A channel's settings, read from ``CHAT4ALL_<NAME>_*`` (the environment or the settings
    file); a channel's model adds its fields, among them its accounts."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, env_ignore_empty=True)

    def accounts(self) -> Mapping[str, AccountSettings]:
        """The configured accounts by name (none: the channel runs against its simulator on the
        embedded default, or not at all)."""
        return {}

    def secrets(self) -> list[str]:
        """Every secret value in these settings (masked in logs)."""
        return _secrets(self)


def _secrets(value: object) -> list[str]:
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, BaseModel):
        return [s for name in type(value).model_fields for s in _secrets(getattr(value, name))]
    if isinstance(value, Mapping):
        return [s for item in value.values() for s in _secrets(item)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _secrets(item)]
    return []


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message someone sent to one of our accounts, in the canonical model."""

    update_id: str
    """The provider's id of this delivery: a repeat of it is stored once."""
    sender: str
    """Who wrote (the conversation's recipient when we answer)."""
    provider_message_id: str
    content: Content
    echo: bool = False
    """The provider's echo of a message sent from our account (an ``is_echo`` flag):
    ``sender`` is then the conversation's recipient. An echo of one of our own sends is not
    stored again (it is a ``sent`` receipt); one sent from elsewhere (the provider's inbox app)
    is stored as an outbound message of the conversation."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """A provider's status report for a message we sent (``provider_message_id``), or a
    watermark: every outbound message of the conversation with ``recipient`` sent up to
    ``watermark`` (delivery and read watermarks, "seen up to" events; ``provider_message_id``
    is then ``""``)."""

    provider_message_id: str
    status: DeliveryStatus
    """``sent``, ``delivered``, ``read`` or ``failed``."""
    detail: str | None = None
    """Why, for ``failed`` (the provider's error code and reason)."""
    watermark: float | None = None
    """Unix time: the receipt covers every message sent to ``recipient`` up to it."""
    recipient: str | None = None
    """The conversation's recipient (with ``watermark``)."""


OK: Final = WebhookReply(200, b'{"ok":true}')


@dataclass(frozen=True, slots=True)
class Received:
    """What one webhook request (or one poll) brought, and what the provider is answered."""

    messages: tuple[InboundMessage, ...] = ()
    receipts: tuple[Receipt, ...] = ()
    reply: WebhookReply = OK


Deliver = Callable[[str, Received], Awaitable[object]]
"""Hands what an account received to the core (which stores, deduplicates and announces it)."""


class ChannelConnector(Connector, Protocol):
    async def close(self) -> None:
        """Release its connections (at shutdown)."""
        ...


class ActionConnector(ChannelConnector, Protocol):
    """A connector that also carries out actions that are not messages (the ones its channel's
    ``Limits.actions`` declares). Optional: the core checks for :meth:`act` and answers a 422
    for a channel without it."""

    async def act(self, conversation: Conversation, request: ActionRequest) -> None:
        """Do ``request.action`` in ``conversation`` now (not queued: a typing indicator is
        worthless late). Raises ``RetryableDelivery`` / ``PermanentDelivery`` like ``send``."""
        ...


class MediaConnector(ChannelConnector, Protocol):
    """A connector that also downloads the files people send to our accounts. Optional: for
    a channel with it, the core fetches each inbound attachment after the message is stored
    and the provider answered, and before the message is announced, so clients get a
    ``media_id`` they download from us (the provider's reference stays as the attachment's
    ``url``)."""

    async def fetch(self, account: str, reference: str, tenant: str, store: MediaStore) -> Media:
        """The file an inbound attachment names (``reference``: its ``url`` as this channel's
        receiver made it), downloaded with ``account``'s credentials into ``store`` for
        ``tenant``, streamed. Raises ``RetryableDelivery`` (try again later) or
        ``PermanentDelivery`` (it cannot be had)."""
        ...


@runtime_checkable
class PausableConnector(ChannelConnector, Protocol):
    """A connector whose accounts pause when the provider refuses their credentials (an
    expired or revoked token): their messages wait (``AccountPaused``) until the token is
    replaced in the settings (a reload) or an admin resumes the account. Optional: the core
    checks for :meth:`paused`; a channel without it never pauses an account."""

    def paused(self) -> Mapping[str, str]:
        """The paused accounts and why (the provider's error, never the token)."""
        ...

    def resume(self, account: str, token: str | None = None) -> bool:
        """Resume ``account`` (with its new ``token`` when given); whether it was paused.
        ``PermanentDelivery`` for an account it does not have."""
        ...

    def reload(self, settings: ChannelSettings) -> Mapping[str, str]:
        """The channel's settings as re-read: each configured account's changed token swapped
        in (a paused one resumes with it); what changed, by account. Accounts added or removed
        take a restart."""
        ...


class Receiver(Protocol):
    async def webhook(self, account: str, request: WebhookRequest) -> Received:
        """One provider request for ``account`` (configured: the core checked): the provider's
        handshake (a GET) or a delivery. :class:`~chat4all.errors.AuthError` when its signature
        or secret is wrong or missing; :class:`~chat4all.errors.InvalidRequest` when its body
        is not what the provider sends."""
        ...


class Poller(Protocol):
    @property
    def name(self) -> str:
        """For logs and the task's name (e.g. ``<channel>-poll-<account>``)."""
        ...

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch until ``stop``; a provider fetched again after a crash redelivers, and the
        core's deduplication makes that harmless."""
        ...


class Fault(StrEnum):
    """Provider failures a simulator can be made to answer (the next calls, one each)."""

    THROTTLED = "throttled"
    """Too many requests: the connector retries (later)."""
    UNAVAILABLE = "unavailable"
    """The provider failed (5xx): the connector retries."""
    REFUSED = "refused"
    """The recipient or the request is refused for good: the connector gives up."""


class Simulator(Protocol):
    """A local stand-in for the provider's documented API, built for one channel's settings."""

    def app(self) -> ASGIApp:
        """Its HTTP API (the channel's connector points its API URL at where it is served)."""
        ...

    def inject(self, fault: Fault, times: int = 1) -> None: ...

    def sent_to(self, recipient: str) -> int:
        """How many provider calls for ``recipient`` it accepted."""
        ...

    def user_message(self, sender: str, text: str) -> bytes:
        """The payload the provider pushes when ``sender`` writes ``text`` to our account."""
        ...

    def webhook_request(
        self, account: str, payload: bytes, *, genuine: bool = True
    ) -> WebhookRequest:
        """``payload`` as the provider delivers it to ``account``'s webhook: signed with its
        secret, or (``genuine=False``) with a wrong signature."""
        ...


S = TypeVar("S", bound=ChannelSettings)


class ChannelPlugin(Protocol[S]):
    """One channel. Implementations are plain objects (no state beyond their declaration): the
    hub builds the parts below once per start, from the channel's settings."""

    @property
    def name(self) -> str: ...

    @property
    def limits(self) -> Limits: ...

    @property
    def settings(self) -> type[S]:
        """Its settings model (read from ``CHAT4ALL_<NAME>_*``)."""
        ...

    def simulated(self, settings: S, api_url: str) -> S:
        """``settings`` for the embedded default: one account, :data:`SIMULATOR_ACCOUNT`,
        against the simulator served at ``api_url`` (called before the simulator is served,
        with a placeholder URL, to build it; then again with its URL)."""
        ...

    def simulator(self, settings: S) -> Simulator:
        """A simulator that knows ``settings``' accounts (their tokens, secrets ...)."""
        ...

    def connector(self, settings: S, media: MediaStore | None) -> ChannelConnector:
        """Outbound for every account of ``settings``; uploads are read from ``media``."""
        ...

    def receiver(self, settings: S) -> Receiver: ...

    def pollers(self, settings: S, deliver: Deliver) -> Sequence[Poller]:
        """What fetches updates instead of a webhook (as settings ask; usually none)."""
        ...


@contextlib.asynccontextmanager
async def upload_of(
    store: MediaStore | None, tenant: str, media_id: str, what: str
) -> AsyncIterator[tuple[Media, BinaryIO]]:
    """An uploaded file opened for a connector to send (``what``: the provider's call, for the
    reason): a file gone, or no media store here, fails the message for good; a store that
    cannot answer now (a bucket unreachable) is a retry, not an adapter's crash."""
    if store is None:
        raise PermanentDelivery(f"{what}: this hub has no media store to read uploads from")
    try:
        async with store.open(tenant, media_id) as opened:
            yield opened
    except NotFound as exc:
        raise PermanentDelivery(f"{what}: {exc}") from None
    except StoreUnavailable as exc:
        raise RetryableDelivery(f"{what}: {exc}", exc.retry_after) from None
