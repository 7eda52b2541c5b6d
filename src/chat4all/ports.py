"""Ports of chat4all's core. Adapters implement them; tests inject in-memory fakes.

The storage port carries the delivery guarantees: :meth:`MessageStore.accept` writes the
message, its outbox row and the idempotency record in one transaction, so an accepted message
is durable; :class:`Outbox` hands the dispatcher at most one message per conversation at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import BinaryIO, Final, Generic, Protocol, TypeVar

from chat4all.domain.model import Content, Conversation, Media, Message

T = TypeVar("T")

__all__ = [
    "SendRequest",
    "Origin",
    "NO_ORIGIN",
    "Accepted",
    "Page",
    "OutboxItem",
    "MessageStore",
    "Outbox",
    "Connector",
    "MediaStore",
    "WebhookRequest",
    "WebhookReply",
]


@dataclass(frozen=True, slots=True)
class SendRequest:
    channel: str
    account: str
    recipient: str
    content: Content


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a message was accepted (the W3C ``traceparent`` and the request id): stored with
    its outbox row, so its delivery continues the same trace and logs the same request id."""

    traceparent: str | None = None
    request_id: str | None = None


NO_ORIGIN: Final = Origin()


@dataclass(frozen=True, slots=True)
class Accepted:
    message: Message
    replayed: bool
    """True when an earlier request with the same Idempotency-Key made it."""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    message: Message
    conversation: Conversation
    attempts: int
    """Delivery attempts before this one."""
    origin: Origin = NO_ORIGIN
    done: tuple[str, ...] = ()
    """Provider ids of the parts an earlier attempt delivered: this one sends the rest."""


class MessageStore(Protocol):
    async def accept(
        self,
        tenant: str,
        request: SendRequest,
        idempotency: tuple[str, str] | None,
        now: float,
        origin: Origin = NO_ORIGIN,
    ) -> Accepted:
        """Persist a new outbound message (``idempotency``: key and body hash)."""
        ...

    async def get(self, tenant: str, message_id: str) -> Message: ...

    async def conversations(
        self, tenant: str, cursor: str | None, limit: int
    ) -> Page[Conversation]: ...

    async def messages(
        self, tenant: str, conversation_id: str, cursor: str | None, limit: int
    ) -> Page[Message]: ...


class Outbox(Protocol):
    async def recover(self) -> int:
        """At start: hand back what a crashed run had in flight; returns how many (each may
        have reached the provider already: the only case of a duplicate send)."""
        ...

    async def claim(self, now: float, limit: int) -> list[OutboxItem]:
        """Due heads of conversations with nothing in flight, marked in flight."""
        ...

    async def sent(self, item: OutboxItem, provider_id: str, now: float) -> None: ...

    async def retry(
        self, item: OutboxItem, at: float, reason: str, now: float, done: tuple[str, ...] = ()
    ) -> None:
        """Pending again at ``at``; ``done``: the parts delivered so far (kept for the next)."""
        ...

    async def dead(
        self, item: OutboxItem, reason: str, now: float, done: tuple[str, ...] = ()
    ) -> None: ...

    async def depth(self) -> int: ...


class Connector(Protocol):
    """One channel's outbound side. Raises ``RetryableDelivery`` or ``PermanentDelivery``."""

    channel: str

    async def send(
        self, conversation: Conversation, message: Message, done: tuple[str, ...] = ()
    ) -> str:
        """Deliver ``message``, skipping the ``len(done)`` parts an earlier attempt delivered;
        returns the provider's id for it (its first part's). A failure after some parts says
        which in its ``done``."""
        ...


class MediaStore(Protocol):
    """Uploaded files, each owned by one tenant: no tenant reads another's."""

    async def put(
        self,
        tenant: str,
        chunks: AsyncIterable[bytes],
        *,
        filename: str,
        mime_type: str,
        kind: str,
        now: float,
    ) -> Media:
        """Store the bytes ``chunks`` yields (an exception from it stores nothing)."""
        ...

    async def get(self, tenant: str, media_id: str) -> Media:
        """Raises ``NotFound`` when ``tenant`` has no such media."""
        ...

    def open(
        self, tenant: str, media_id: str
    ) -> AbstractAsyncContextManager[tuple[Media, BinaryIO]]:
        """The media and its bytes, readable from the start (``NotFound`` as :meth:`get`)."""
        ...


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A provider's call to our inbound webhook, as received (the entrypoint parses nothing)."""

    method: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    """Lower-case names."""
    body: bytes


@dataclass(frozen=True, slots=True)
class WebhookReply:
    """What the provider gets back."""

    status: int
    body: bytes
    content_type: str = "application/json"
