"""Messages and idempotency: appending to conversations, reading them back, and the
Idempotency-Key records that make a retried send return the first answer.

- **Durable accept.** The conversation's next ``seq``, the message, its first status events,
  its outbox row and the idempotency record are written in one transaction (see
  :meth:`MessageLog.insert_outbound`; the store runs it in a group commit).
- **Idempotency.** A key is reserved first (``in_flight``, with a lease), then completed with the
  first answer in the accept transaction. The same key and body replays that answer exactly as
  it was sent; another body is refused; a key whose first request is still running gives "in
  flight". A reservation whose process died is taken over once its lease ran out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from chat4all.adapters.storage.engine import Database, upsert
from chat4all.adapters.storage.outbox import join_queue
from chat4all.adapters.storage.rows import (
    decode_cursor,
    decode_seq_cursor,
    dump_content,
    dump_message,
    encode_cursor,
    load_message,
    new_id,
    to_conversation,
    undump_message,
)
from chat4all.adapters.storage.schema import (
    conversations,
    idempotency,
    messages,
    status_events,
)
from chat4all.domain.model import Conversation, DeliveryStatus, Message, StatusEvent
from chat4all.errors import IdempotencyConflict, IdempotencyInFlight, NotFound
from chat4all.ports import Origin, Page, SendRequest

__all__ = ["MessageLog", "Job", "IDEMPOTENCY_LEASE", "append", "conversation_of"]

IDEMPOTENCY_LEASE: Final = 30.0
"""Seconds a reserved key stays "in flight" before another request may take it over."""
_CONVERSATION_CACHE: Final = 100_000

ConversationKey = tuple[str, str, str, str]
"""``(tenant, channel, account, recipient)``."""

# The accept's statements, built once: building one costs more than running it (~50 µs of
# SQLAlchemy per statement, a few per group commit).
_RESERVE_ONE: Final = (
    conversations.update()
    .where(conversations.c.id == sa.bindparam("conversation"))
    .values(
        next_seq=conversations.c.next_seq + sa.bindparam("step", type_=sa.Integer),
        last_message_at=sa.bindparam("at", type_=sa.Float),
    )
    .returning(conversations.c.id, conversations.c.next_seq)
)
_INSERT_MESSAGES: Final = messages.insert()
_INSERT_EVENTS: Final = status_events.insert()
_COMPLETE: Final = (
    idempotency.update()
    .where(
        idempotency.c.tenant == sa.bindparam("t"),
        idempotency.c.key == sa.bindparam("k"),
        idempotency.c.message_id.is_(None),
    )
    .values(message_id=sa.bindparam("m"), response=sa.bindparam("r"))
)
"""An idempotency key's first answer, while the key is still open."""


@dataclass(frozen=True, slots=True)
class Job:
    """One accept waiting for its group commit."""

    tenant: str
    request: SendRequest
    idempotency_key: str | None
    now: float
    origin: Origin


class MessageLog:
    """Messages of conversations: accepting, reading, and the idempotency records."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conversation_ids: dict[ConversationKey, str] = {}
        """Conversations are never deleted nor re-keyed: an id, once committed, stays valid."""

    def learn(self, learned: dict[ConversationKey, str]) -> None:
        """Conversations a committed batch created (their ids are now safe to reuse)."""
        if len(self._conversation_ids) > _CONVERSATION_CACHE:
            self._conversation_ids.clear()
        self._conversation_ids.update(learned)

    # ---- idempotency -----------------------------------------------------------------------

    async def reserve(self, tenant: str, key: str, body_hash: str, now: float) -> Message | None:
        """Reserve ``key``; the first answer (its message as first sent) when it already
        completed."""
        async with self._db.transaction() as conn:
            # insert-or-nothing: concurrent first requests (PostgreSQL has no writer lock) find
            # one winner, and the others the row it made
            reserved = await conn.execute(
                upsert(conn, idempotency)
                .values(
                    tenant=tenant,
                    key=key,
                    body_hash=body_hash,
                    lease_until=now + IDEMPOTENCY_LEASE,
                    created_at=now,
                )
                .on_conflict_do_nothing()
            )
            if reserved.rowcount == 1:
                return None
            row = (
                await conn.execute(
                    sa.select(idempotency).where(
                        idempotency.c.tenant == tenant, idempotency.c.key == key
                    )
                )
            ).one()
            if row.body_hash != body_hash:
                raise IdempotencyConflict()
            if row.response is not None:
                return undump_message(row.response)
            if row.message_id is not None:  # completed by a release that kept no answer
                return await load_message(conn, tenant, row.message_id)
            if row.lease_until > now:
                raise IdempotencyInFlight(
                    "the first request with this Idempotency-Key is still being processed; "
                    "retry in a moment"
                )
            # The first request's process died before completing: this one takes over, if no
            # other retry took it over first (one conditional write decides between them)
            taken = await conn.execute(
                idempotency.update()
                .where(
                    idempotency.c.tenant == tenant,
                    idempotency.c.key == key,
                    idempotency.c.message_id.is_(None),
                    idempotency.c.lease_until <= now,
                )
                .values(lease_until=now + IDEMPOTENCY_LEASE)
            )
            if taken.rowcount != 1:
                raise IdempotencyInFlight(
                    "the first request with this Idempotency-Key is still being processed; "
                    "retry in a moment"
                )
            return None

    # ---- accepting ---------------------------------------------------------------------------

    def threads(
        self, conn: sa.Connection, jobs: list[Job], learned: dict[ConversationKey, str]
    ) -> list[str]:
        """The conversation of each of ``jobs`` (created when new; not locked). Conversations
        created here go to ``learned`` (cached once committed)."""
        return [self._conversation_id(conn, job, learned) for job in jobs]

    def insert_outbound(
        self, conn: sa.Connection, jobs: list[Job], ids: list[str]
    ) -> list[Message]:
        """Append ``jobs`` to their conversations ``ids`` (:meth:`threads`), in order, with a
        few statements for all: one UPDATE ... RETURNING reserves each conversation's seqs
        (which locks them till the commit, on PostgreSQL), then one executemany per table.
        Each new outbox row is its conversation's head when nothing of it waits before."""
        if not jobs:
            return []
        counts: dict[str, int] = {}
        last_at: dict[str, float] = {}
        for job, conversation in zip(jobs, ids, strict=True):
            counts[conversation] = counts.get(conversation, 0) + 1
            last_at[conversation] = job.now
        if len(counts) == 1:  # the statement built once (most batches under a steady load)
            ((conversation, count),) = counts.items()
            reserved = conn.execute(
                _RESERVE_ONE,
                {"conversation": conversation, "step": count, "at": last_at[conversation]},
            ).all()
        else:
            reserved = conn.execute(
                conversations.update()
                .where(conversations.c.id.in_(list(counts)))
                .values(
                    next_seq=conversations.c.next_seq + sa.case(counts, value=conversations.c.id),
                    last_message_at=sa.case(last_at, value=conversations.c.id),
                )
                .returning(conversations.c.id, conversations.c.next_seq)
            ).all()
        # next_seq is now past this batch: its messages take the count seqs before it, in order
        following = {row[0]: int(row[1]) - counts[row[0]] for row in reserved}
        message_rows: list[dict[str, Any]] = []
        event_rows: list[dict[str, Any]] = []
        outbox_rows: list[dict[str, Any]] = []
        keyed: list[dict[str, Any]] = []
        written: list[Message] = []
        accepted, queued = DeliveryStatus.ACCEPTED.value, DeliveryStatus.QUEUED.value
        for job, conversation in zip(jobs, ids, strict=True):
            seq = following[conversation]
            following[conversation] = seq + 1
            message_id = new_id("m_")
            now = job.now
            message_rows.append(
                {
                    "id": message_id,
                    "tenant": job.tenant,
                    "conversation_id": conversation,
                    "seq": seq,
                    "direction": "outbound",
                    "content": dump_content(job.request.content),
                    "status": queued,
                    "created_at": now,
                    "provider_message_id": None,
                }
            )
            event_rows.append({"message_id": message_id, "status": accepted, "at": now})
            event_rows.append({"message_id": message_id, "status": queued, "at": now})
            outbox_rows.append(
                {
                    "message_id": message_id,
                    "conversation_id": conversation,
                    "seq": seq,
                    "state": "pending",
                    "attempts": 0,
                    "available_at": now,
                    "trace_context": job.origin.traceparent,
                    "request_id": job.origin.request_id,
                }
            )
            message = Message(
                message_id,
                job.tenant,
                conversation,
                seq,
                "outbound",
                job.request.content,
                DeliveryStatus.QUEUED,
                now,
                None,
                (
                    StatusEvent(DeliveryStatus.ACCEPTED, now),
                    StatusEvent(DeliveryStatus.QUEUED, now),
                ),
            )
            if job.idempotency_key is not None:
                keyed.append(
                    {
                        "t": job.tenant,
                        "k": job.idempotency_key,
                        "m": message_id,
                        "r": dump_message(message),
                    }
                )
            written.append(message)
        conn.execute(_INSERT_MESSAGES, message_rows)
        conn.execute(_INSERT_EVENTS, event_rows)
        join_queue(conn, outbox_rows)
        for row in keyed:  # one by one: each must find its key still open
            if conn.execute(_COMPLETE, row).rowcount != 1:
                # Another request took this key over while this one was slow (past the
                # reservation's lease) and completed first: its answer is the first; this
                # batch rolls back and is committed again without this job, which fails.
                raise IdempotencyInFlight(
                    "another request with this Idempotency-Key completed first; retry to get "
                    "its answer"
                )
        return written

    def _conversation_id(
        self, conn: sa.Connection, job: Job, learned: dict[ConversationKey, str]
    ) -> str:
        """The conversation of ``job``, created when new (its ``next_seq`` is bumped by the
        caller)."""
        request = job.request
        key = (job.tenant, request.channel, request.account, request.recipient)
        known = self._conversation_ids.get(key) or learned.get(key)
        if known is None:
            known = conversation_of(conn, job.tenant, request, job.now)
            learned[key] = known
        return known

    # ---- reading -------------------------------------------------------------------------------

    async def get(self, tenant: str, message_id: str) -> Message:
        async with self._db.read() as conn:
            return await load_message(conn, tenant, message_id)

    async def conversations(
        self, tenant: str, cursor: str | None, limit: int
    ) -> Page[Conversation]:
        query = sa.select(conversations).where(conversations.c.tenant == tenant)
        if cursor is not None:
            query = query.where(conversations.c.id > decode_cursor(cursor))
        async with self._db.read() as conn:
            rows = (await conn.execute(query.order_by(conversations.c.id).limit(limit + 1))).all()
        items = tuple(to_conversation(r) for r in rows[:limit])
        more = len(rows) > limit
        return Page(items, encode_cursor(items[-1].id) if more and items else None)

    async def messages(
        self, tenant: str, conversation_id: str, cursor: str | None, limit: int
    ) -> Page[Message]:
        async with self._db.read() as conn:
            owner = (
                await conn.execute(
                    sa.select(conversations.c.id).where(
                        conversations.c.id == conversation_id, conversations.c.tenant == tenant
                    )
                )
            ).scalar()
            if owner is None:
                raise NotFound(f"no conversation {conversation_id!r}")
            query = sa.select(messages.c.id).where(messages.c.conversation_id == conversation_id)
            if cursor is not None:
                query = query.where(messages.c.seq > decode_seq_cursor(cursor))
            ids = (await conn.execute(query.order_by(messages.c.seq).limit(limit + 1))).scalars()
            listed = list(ids)
            items = tuple([await load_message(conn, tenant, i) for i in listed[:limit]])
        more = len(listed) > limit
        return Page(items, encode_cursor(str(items[-1].seq)) if more and items else None)

    async def conversation(
        self, tenant: str, conversation_id: str
    ) -> tuple[Conversation, str | None]:
        """``tenant``'s conversation and the provider's id of the latest message received in
        it (``None``: none yet); ``NotFound`` for anyone else's."""
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(conversations).where(
                        conversations.c.id == conversation_id, conversations.c.tenant == tenant
                    )
                )
            ).first()
            if row is None:
                raise NotFound(f"no conversation {conversation_id!r}")
            last = (
                await conn.execute(
                    sa.select(messages.c.provider_message_id)
                    .where(
                        messages.c.conversation_id == conversation_id,
                        messages.c.direction == "inbound",
                    )
                    .order_by(messages.c.seq.desc())
                    .limit(1)
                )
            ).scalar()
        return to_conversation(row), last


def conversation_of(conn: sa.Connection, tenant: str, request: SendRequest, now: float) -> str:
    """The id of the conversation ``request`` belongs to, created when new. An existing one is
    only read (not locked: the caller locks it when it reserves its seqs, which also sets its
    ``last_message_at``)."""
    where = (
        (conversations.c.tenant == tenant)
        & (conversations.c.channel == request.channel)
        & (conversations.c.account == request.account)
        & (conversations.c.recipient == request.recipient)
    )
    found = conn.execute(sa.select(conversations.c.id).where(where)).scalar()
    if found is not None:
        return str(found)
    # insert-or-nothing: a concurrent first message (inbound and outbound at once, on
    # PostgreSQL) may create it first; then its id is the one
    conn.execute(
        upsert(conn, conversations)
        .values(
            id=new_id("c_"),
            tenant=tenant,
            channel=request.channel,
            account=request.account,
            recipient=request.recipient,
            next_seq=1,
            last_message_at=now,
        )
        .on_conflict_do_nothing()
    )
    return str(conn.execute(sa.select(conversations.c.id).where(where)).scalar_one())


async def append(
    conn: AsyncConnection,
    tenant: str,
    request: SendRequest,
    direction: str,
    status: DeliveryStatus,
    now: float,
    provider_message_id: str | None = None,
) -> str:
    """Add a message at the end of its conversation; its id."""
    conversation = await conn.run_sync(conversation_of, tenant, request, now)
    seq = (
        await conn.execute(
            conversations.update()
            .where(conversations.c.id == conversation)
            .values(next_seq=conversations.c.next_seq + 1, last_message_at=now)
            .returning(conversations.c.next_seq)
        )
    ).scalar_one()
    message_id = new_id("m_")
    await conn.execute(
        messages.insert().values(
            id=message_id,
            tenant=tenant,
            conversation_id=conversation,
            seq=int(seq) - 1,
            direction=direction,
            content=dump_content(request.content),
            status=status.value,
            created_at=now,
            provider_message_id=provider_message_id,
        )
    )
    return message_id
