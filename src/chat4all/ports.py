"""Ports of chat4all's core. Adapters implement them; tests inject in-memory fakes.

The storage port carries the delivery guarantees: :meth:`MessageStore.accept` writes the
message, its outbox row and the idempotency record in one transaction, so an accepted message
is durable; :class:`Outbox` hands the dispatcher at most one message per conversation at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, BinaryIO, Final, Generic, Protocol, TypeVar

from chat4all.domain.model import Content, Conversation, Media, Message, Oversize

T = TypeVar("T")

__all__ = [
    "Action",
    "ACTIONS",
    "ActionRequest",
    "SendRequest",
    "Origin",
    "NO_ORIGIN",
    "Accepted",
    "Pending",
    "Page",
    "OutboxItem",
    "MessageStore",
    "Outbox",
    "Publishable",
    "LogEntry",
    "MessageLog",
    "PartitionLeases",
    "Connector",
    "MediaStore",
    "Staged",
    "Chunk",
    "UploadStaging",
    "TenantSettingsStore",
    "WebhookRequest",
    "WebhookReply",
]


class Action(StrEnum):
    """What a client asks a channel to do in a conversation that is not a message."""

    TYPING_ON = "typing_on"
    """Show "typing..." to the recipient (channels clear it after a few seconds or on send)."""
    TYPING_OFF = "typing_off"
    MARK_READ = "mark_read"
    """Mark what the recipient sent us as read (their "seen" ticks)."""


ACTIONS: Final = tuple(a.value for a in Action)


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """An :class:`Action` as the connector gets it."""

    action: Action
    last_inbound: str | None = None
    """The provider's id of the latest message the recipient sent us in the conversation
    (``None``: none yet): what a channel that marks one message read needs (a typing
    indicator may ride on it)."""


@dataclass(frozen=True, slots=True)
class SendRequest:
    channel: str
    account: str
    recipient: str
    content: Content
    oversize: Oversize | None = None
    """What to do with an upload over the channel's limit for its kind (``None``: the tenant's
    setting)."""


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
    """True when an earlier request with the same Idempotency-Key made it: ``message`` is then
    that request's answer, as it was sent (not the message's current state)."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A received message stored and not yet announced to its tenant's clients."""

    channel: str
    account: str
    message: Message


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
    holder: str = ""
    """The worker whose claim returned it (``""``: held by nobody, e.g. made by hand)."""
    reclaimed: bool = False
    """It was in flight under a lease that ran out (its worker presumed dead): the provider
    may have it already, and sees it again (the one case of a duplicate send)."""


@dataclass(frozen=True, slots=True)
class Backlog:
    """How far behind the workers are (what the API's load shedding watches)."""

    oldest_due_age: float
    """Seconds the oldest message the workers could send now (the due head of a conversation
    with nothing in flight) has waited since it came due; 0: none waits."""
    depth: int
    """Messages waiting for delivery (pending or in flight), counted up to the bound asked
    for (one more than it means "over")."""


class MessageStore(Protocol):
    async def accept(
        self,
        tenant: str,
        request: SendRequest,
        idempotency: tuple[str, str] | None,
        now: float,
        origin: Origin = NO_ORIGIN,
    ) -> Accepted:
        """Persist a new outbound message (``idempotency``: key and body hash). A repeat of a
        completed key returns the first answer (the message as it was accepted then), marked
        ``replayed``."""
        ...

    async def get(self, tenant: str, message_id: str) -> Message: ...

    async def conversations(
        self, tenant: str, cursor: str | None, limit: int
    ) -> Page[Conversation]: ...

    async def messages(
        self, tenant: str, conversation_id: str, cursor: str | None, limit: int
    ) -> Page[Message]: ...


class Outbox(Protocol):
    """Claims with leases: an item is ``worker``'s until its lease runs out; the worker renews
    while it delivers. Safe with any number of workers in any number of processes."""

    async def recover(self, now: float) -> int:
        """Rows in flight under a lease that ran out at ``now`` (their workers presumed dead),
        back to pending; returns how many (each may have reached the provider already). A live
        worker's rows are never taken. Claims do the same as they go."""
        ...

    async def claim(self, now: float, limit: int, *, worker: str, lease: float) -> list[OutboxItem]:
        """Due heads of conversations with nothing in flight (at most one message of a
        conversation in flight across all workers), held by ``worker`` until ``now + lease``."""
        ...

    async def renew(self, items: Sequence[OutboxItem], *, worker: str, until: float) -> None:
        """Extend ``worker``'s leases of ``items`` to ``until`` (items it no longer holds are
        left alone)."""
        ...

    async def sent(self, item: OutboxItem, provider_id: str, now: float) -> None: ...

    async def retry(
        self,
        item: OutboxItem,
        at: float,
        reason: str,
        now: float,
        done: tuple[str, ...] = (),
        counted: bool = True,
    ) -> None:
        """Pending again at ``at``; ``done``: the parts delivered so far (kept for the next);
        ``counted``: whether this attempt counts towards the message's attempts (not while its
        account is paused: it waits for an operator, not for the provider)."""
        ...

    async def dead(
        self, item: OutboxItem, reason: str, now: float, done: tuple[str, ...] = ()
    ) -> None: ...

    async def depth(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Publishable:
    """A due head the relay publishes to the log."""

    message_id: str
    conversation_id: str
    attempts: int
    generation: int
    again: bool
    """Published before, longer ago than the relay's horizon and still not claimed (the log
    lost it, or was reset): published again under a new generation."""

    @property
    def msg_id(self) -> str:
        """The log's deduplication id: ``<message_id>:<attempts>:<generation>``."""
        return f"{self.message_id}:{self.attempts}:{self.generation}"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry handed out by a :class:`MessageLog`."""

    partition: int
    msg_id: str
    payload: bytes
    deliveries: int
    """How many times the log has handed it out, this time included (1 the first time)."""
    handle: Any = field(default=None, compare=False, repr=False)
    """The adapter's own (what ``ack`` and the others need)."""


class MessageLog(Protocol):
    """A partitioned log with deduplicated publication and acknowledged consumption (NATS
    JetStream; Kafka would be another adapter). An entry published with a key lands on one
    partition (a stable hash of the key modulo ``partitions``); an entry published again with
    the same id within the duplicate window is dropped. A fetched entry is the fetcher's until
    it acks it or the ack wait passes (then it is handed out again), at most ``max_deliver``
    times in all."""

    partitions: int
    max_deliver: int

    async def publish(self, key: str, msg_id: str, payload: bytes) -> bool:
        """Append; ``False`` when the log dropped it as a duplicate of ``msg_id``."""
        ...

    async def fetch(self, partition: int, limit: int, wait: float = 0.0) -> list[LogEntry]:
        """Up to ``limit`` entries of ``partition`` that are due, waiting up to ``wait``
        seconds for the first."""
        ...

    async def ack(self, entry: LogEntry) -> None:
        """Done with it: never handed out again."""
        ...

    async def nak(self, entry: LogEntry, delay: float) -> None:
        """Hand it out again after ``delay`` seconds (counts as a delivery)."""
        ...

    async def term(self, entry: LogEntry) -> None:
        """Given up on: never handed out again (whatever its deliveries)."""
        ...

    async def progress(self, entry: LogEntry) -> None:
        """Still working on it: its ack wait starts again."""
        ...

    async def lag(self) -> int:
        """Entries not yet acknowledged, over all partitions."""
        ...


class PartitionLeases(Protocol):
    """Who consumes which partition of a log: each partition has one holder at a time, and the
    workers share them fairly."""

    async def rebalance(self, worker: str, now: float, lease: float, partitions: int) -> list[int]:
        """``worker`` is alive until ``now + lease``: its leases are renewed, free or expired
        partitions taken up to its fair share (``ceil(partitions / live workers)``), the
        surplus given back; the partitions it holds until ``now + lease``."""
        ...

    async def release(self, worker: str) -> None:
        """``worker`` stops: its partitions are free at once."""
        ...


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
class Staged:
    """A resumable upload as declared at creation."""

    id: str
    tenant: str
    size: int
    filename: str
    mime_type: str
    kind: str | None
    sha256: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes to append (in one piece, or streamed), kept only whole: with ``sha256`` (hex),
    only when they hash to it."""

    data: bytes | AsyncIterable[bytes]
    sha256: str | None = None


class UploadStaging(Protocol):
    """Resumable uploads being received, until they are finished into the media store: on the
    local disk (:class:`~chat4all.adapters.storage.uploads.FileUploads`) or in the S3 bucket
    (:class:`~chat4all.adapters.storage.uploads_s3.S3Uploads`). Nothing of an upload lives in
    the process: any process sharing the staging resumes it. Chunks are appended at the
    current offset only, by one request at a time; a chunk is kept only whole (and matching
    its sha256, when given); asking the offset takes no lock. An upload without a kept chunk
    for its time to live is gone (:class:`~chat4all.errors.NotFound`, saying it expired)."""

    ttl: float

    async def create(
        self,
        tenant: str,
        *,
        size: int,
        filename: str,
        mime_type: str,
        kind: str | None,
        sha256: str | None,
        now: float,
    ) -> Staged: ...

    async def get(self, tenant: str, upload_id: str, now: float) -> tuple[Staged, int]:
        """The upload and its offset (bytes kept); :class:`NotFound` for another tenant's,
        like one that does not exist, and for one without a kept chunk for ``ttl``."""
        ...

    async def append(
        self,
        tenant: str,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[Chunk],
        clock: Callable[[], float],
    ) -> int:
        """Append ``chunks`` at ``offset``, which must be the current one (else
        :class:`UploadConflict` names it, as when another request is writing this upload).
        Each chunk is kept whole or not at all: when one is refused (a wrong sha256, past the
        declared size) or ``chunks`` fails (the client went away), the chunks before it stay.
        Returns the new offset; ``clock`` says when each chunk was kept."""
        ...

    def opened(
        self, tenant: str, upload_id: str, now: float
    ) -> AbstractAsyncContextManager[tuple[Staged, BinaryIO]]:
        """A complete upload's bytes from the start (:class:`InvalidRequest` while incomplete)."""
        ...

    async def discard(self, tenant: str, upload_id: str, now: float) -> None:
        """Drop the upload and its staged bytes."""
        ...

    async def expire(self, now: float) -> int:
        """Delete the uploads (of every tenant) without a kept chunk for ``ttl`` seconds, but
        for one a request is writing now; returns how many."""
        ...


class TenantSettingsStore(Protocol):
    """Each tenant's settings (only those an admin changed are stored)."""

    async def oversize(self, tenant: str) -> Oversize | None:
        """The tenant's policy for uploads over a channel's limit (``None``: never set)."""
        ...

    async def set_oversize(self, tenant: str, policy: Oversize, now: float) -> None: ...


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
