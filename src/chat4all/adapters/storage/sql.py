"""The message store and outbox on SQLAlchemy Core: SQLite (WAL) by default, PostgreSQL later.

Guarantees, all from transactions:

- **Durable accept.** The conversation's next ``seq``, the message, its first status events,
  its outbox row and the idempotency record are written in one transaction: once ``accept``
  returns, the message survives ``kill -9``. Concurrent accepts share a transaction (group
  commit: one fsync for many messages); each returns only after its own commit.
- **Idempotency.** A key is reserved first (``in_flight``, with a lease), then completed with the
  response in the accept transaction. The same key and body replays the stored message; another
  body is refused; a key whose first request is still running gives "in flight". A reservation
  whose process died is taken over once its lease ran out.
- **Per-conversation FIFO.** ``claim`` hands out only the lowest pending ``seq`` of a
  conversation that has nothing in flight, so a conversation's messages reach the provider one
  after the other, in send order, across retries.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import contextvars
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from chat4all.adapters.storage import migrate
from chat4all.domain.model import (
    Attachment,
    Button,
    Content,
    Conversation,
    DeliveryStatus,
    Location,
    Message,
    StatusEvent,
    Template,
    advances,
    content_document,
    message_document,
    status_document,
)
from chat4all.errors import IdempotencyConflict, IdempotencyInFlight, InvalidRequest, NotFound
from chat4all.ports import NO_ORIGIN, Accepted, Origin, OutboxItem, Page, SendRequest

__all__ = ["SqlStore", "Fanout", "metadata", "sqlite_url"]

log = logging.getLogger(__name__)

_GROUP_MAX: Final = 128
"""Accepts committed together at most (one transaction, one fsync)."""
IDEMPOTENCY_LEASE: Final = 30.0
"""Seconds a reserved key stays "in flight" before another request may take it over."""

metadata = sa.MetaData()

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("account", sa.String(128), nullable=False),
    sa.Column("recipient", sa.String(128), nullable=False),
    sa.Column("next_seq", sa.Integer, nullable=False, default=1),
    sa.Column("last_message_at", sa.Float),
    sa.UniqueConstraint("tenant", "channel", "account", "recipient"),
)
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False, index=True),
    sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("provider_message_id", sa.String(128)),
    sa.UniqueConstraint("conversation_id", "seq"),
    sa.Index("messages_provider_id", "provider_message_id"),  # receipts find messages by it
)
status_events = sa.Table(
    "status_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "message_id", sa.String(32), sa.ForeignKey("messages.id"), nullable=False, index=True
    ),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("detail", sa.Text),
)
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("message_id", sa.String(32), sa.ForeignKey("messages.id"), primary_key=True),
    sa.Column("conversation_id", sa.String(32), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    # pending, inflight or dead; a sent message's row is deleted
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("available_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text),
    # Where the send was accepted: the W3C trace context (``traceparent``) and the request id,
    # so the dispatcher's span and logs continue the request's.
    sa.Column("trace_context", sa.String(128)),
    sa.Column("request_id", sa.String(64)),
    # provider ids (JSON list) of the parts an attempt delivered before failing: not sent again
    sa.Column("parts_done", sa.Text),
    sa.Index("outbox_due", "state", "conversation_id", "seq"),
    sa.Index("outbox_ready", "state", "available_at"),  # the claim's walk
)
inbound_updates = sa.Table(
    "inbound_updates",
    metadata,
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("account", sa.String(128), primary_key=True),
    sa.Column("update_id", sa.String(64), primary_key=True),
    sa.Column("message_id", sa.String(32)),
    sa.Column("received_at", sa.Float),
    sa.Index("inbound_updates_age", "received_at"),
)
idempotency = sa.Table(
    "idempotency",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("body_hash", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(32)),
    sa.Column("lease_until", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("idempotency_age", "created_at"),
)


Fanout = Callable[[sa.Connection, str, str, Sequence[tuple[dict[str, Any], float]]], None]
"""``(conn, tenant, event type, [(data, now), ...])``; called with a synchronous connection
(``AsyncConnection.run_sync`` on the async paths)."""


@dataclass(frozen=True, slots=True)
class _Job:
    tenant: str
    request: SendRequest
    idempotency_key: str | None
    now: float
    origin: Origin


@dataclass(frozen=True, slots=True)
class _Sent:
    item: OutboxItem
    provider_id: str
    now: float


_T = TypeVar("_T")
_ConversationKey = tuple[str, str, str, str]
"""``(tenant, channel, account, recipient)``."""
_CONVERSATION_CACHE: Final = 100_000


def _insert(conn: AsyncConnection | sa.Connection, table: sa.Table) -> Any:
    """INSERT with ON CONFLICT support, in the connection's dialect (SQLite, PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


class SqlStore:
    """:class:`~chat4all.ports.MessageStore` and :class:`~chat4all.ports.Outbox` in one."""

    def __init__(self, engine: AsyncEngine, writer: sa.Engine | None = None) -> None:
        self.engine = engine
        self._sync_writer = writer
        """SQLite: a synchronous engine the group commit writes with, from one thread, so a
        batch costs the event loop one hand-off instead of one per statement (each of which
        waited for a turn of a busy loop while the writer lock was held)."""
        self._executor = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sql-writer")
            if writer is not None
            else None
        )
        self._checkpoints = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sql-ckpt")
        self._checkpointer: asyncio.Task[None] | None = None
        self._written = 0
        """Writer-thread transactions so far (the checkpointer skips idle spells)."""
        self._writer = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._pending: asyncio.Queue[tuple[_Job | _Sent, asyncio.Future[Any]]] = asyncio.Queue()
        self._grouper: asyncio.Task[None] | None = None
        self.migrated: tuple[str | None, str | None] = (None, None)
        """Schema revisions before and after :meth:`open` migrated."""
        self._conversation_ids: dict[_ConversationKey, str] = {}
        """Conversations are never deleted nor re-keyed: an id, once committed, stays valid."""
        self.fanout: Fanout | None = None
        """Called inside the transaction of every change a client may subscribe to
        (``message.status``, ``message.inbound``): webhooks queue their deliveries there."""

    @classmethod
    async def open(cls, url: str) -> SqlStore:
        engine = create_async_engine(url, hide_parameters=True)  # values stay out of errors
        writer = None
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            if engine.url.database not in (None, "", ":memory:"):  # a file both engines share
                writer = sa.create_engine(
                    engine.url.set(drivername="sqlite+pysqlite"), hide_parameters=True
                )
                sa.event.listen(writer, "connect", _sqlite_pragmas)
                sa.event.listen(writer, "connect", _no_autocheckpoint)
        try:
            before, after = await migrate.upgrade(engine)
        except BaseException:
            await engine.dispose()
            if writer is not None:
                writer.dispose()
            raise
        if before != after:
            log.info("database schema migrated from %s to %s", before or "empty", after)
        store = cls(engine, writer)
        store.migrated = (before, after)
        return store

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        if self._grouper is not None:
            self._grouper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._grouper
        await self.engine.dispose()
        if self._sync_writer is not None and self._executor is not None:
            self._executor.shutdown(wait=True)
            self._checkpoints.shutdown(wait=True)
            self._sync_writer.dispose()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """The one way to write. SQLite has one writer at a time anyway: taking turns here
        means a transaction never fails upgrading its read lock ("database is locked")."""
        if self._writer is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._writer, self.engine.begin() as conn:
            yield conn

    async def ready(self) -> bool:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return True

    # ---- accepting ---------------------------------------------------------------------------

    async def accept(
        self,
        tenant: str,
        request: SendRequest,
        idempotency_key: tuple[str, str] | None,
        now: float,
        origin: Origin = NO_ORIGIN,
    ) -> Accepted:
        if idempotency_key is not None:
            replay = await self._reserve(tenant, *idempotency_key, now)
            if replay is not None:
                return Accepted(await self.get(tenant, replay), replayed=True)
        job = _Job(tenant, request, idempotency_key[0] if idempotency_key else None, now, origin)
        return Accepted(await self._commit_in_group(job), replayed=False)

    async def _commit_in_group(self, job: _Job | _Sent) -> Any:
        """Group commit: concurrent accepts (and delivery records) share one transaction (one
        fsync); each caller returns only once its own change is committed."""
        if self._grouper is None or self._grouper.done():
            self._grouper = asyncio.create_task(  # not the first caller's request context
                self._group_commits(), name="group-commit", context=contextvars.Context()
            )
        if self._sync_writer is not None and (
            self._checkpointer is None or self._checkpointer.done()
        ):
            self._checkpointer = asyncio.create_task(
                self._checkpoint_often(), name="checkpoint", context=contextvars.Context()
            )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.put_nowait((job, future))
        return await asyncio.shield(future)

    async def _group_commits(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while not self._pending.empty() and len(batch) < _GROUP_MAX:
                batch.append(self._pending.get_nowait())
            try:
                await self._commit_batch(batch)
            except Exception:
                if len(batch) == 1:
                    continue  # its caller has heard
                # Nothing of the batch committed. One bad change must not fail the others (and
                # other tenants'): each goes again alone, and only the guilty one fails.
                for entry in batch:
                    with contextlib.suppress(Exception):
                        await self._commit_batch([entry])

    async def _commit_batch(self, batch: list[tuple[_Job | _Sent, asyncio.Future[Any]]]) -> None:
        """One transaction for ``batch``; each future gets its result, or all the exception."""
        jobs = [job for job, _ in batch if isinstance(job, _Job)]
        sents = [job for job, _ in batch if isinstance(job, _Sent)]
        learned: dict[_ConversationKey, str] = {}
        try:
            written = iter(await self._write_group(jobs, sents, learned))
        except Exception as exc:
            if len(batch) == 1:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            raise
        if len(self._conversation_ids) > _CONVERSATION_CACHE:
            self._conversation_ids.clear()
        self._conversation_ids.update(learned)
        for job, future in batch:
            if not future.done():
                future.set_result(next(written) if isinstance(job, _Job) else None)

    async def _write_group(
        self, jobs: list[_Job], sents: list[_Sent], learned: dict[_ConversationKey, str]
    ) -> list[Message]:
        return await self._write(self._write_batch, jobs, sents, learned)

    async def _write(self, work: Callable[..., _T], *args: Any) -> _T:
        """``work(conn, *args)`` in a write transaction of its own: on SQLite, the whole of it
        (statements, commit, fsync) in the writer thread, one hand-off for the event loop;
        elsewhere through ``run_sync``."""
        if self._sync_writer is None or self._executor is None:
            async with self.transaction() as conn:
                return await conn.run_sync(work, *args)
        assert self._writer is not None
        self._written += 1
        async with self._writer:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, self._in_writer_thread, work, args
            )

    async def _checkpoint_often(self) -> None:
        """The writer thread's connection does not checkpoint on commit (a checkpoint writes
        and fsyncs the database file: tens of ms with the writer lock held, every ~1000 WAL
        pages under load). Here a PASSIVE checkpoint runs every quarter second from a
        connection and thread of its own, beside the writers; commits stay durable on their
        own (WAL, synchronous=FULL), whatever the checkpoint's progress."""
        assert self._sync_writer is not None
        writer, loop = self._sync_writer, asyncio.get_running_loop()

        def checkpoint() -> None:
            with writer.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

        seen = -1
        while True:
            await asyncio.sleep(0.25)
            if self._written == seen:
                continue
            seen = self._written
            try:
                # the bulk of it beside the writers; then the few frames written meanwhile,
                # writers held off, so that the next write starts the WAL over (a checkpoint
                # that never catches up lets the WAL file grow without end)
                await loop.run_in_executor(self._checkpoints, checkpoint)
                assert self._writer is not None
                async with self._writer:
                    await loop.run_in_executor(self._checkpoints, checkpoint)
            except sa.exc.OperationalError:  # busy: next time
                continue

    def _in_writer_thread(self, work: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        assert self._sync_writer is not None
        with self._sync_writer.begin() as conn:
            return work(conn, *args)

    def _write_batch(
        self,
        conn: sa.Connection,
        jobs: list[_Job],
        sents: list[_Sent],
        learned: dict[_ConversationKey, str],
    ) -> list[Message]:
        written = self._insert_outbound(conn, jobs, learned)
        self._record_sent(conn, sents)
        return written

    def _insert_outbound(
        self, conn: sa.Connection, jobs: list[_Job], learned: dict[_ConversationKey, str]
    ) -> list[Message]:
        """Append ``jobs`` to their conversations, in order, with a few statements for all:
        one UPDATE ... RETURNING reserves each conversation's seqs, then one executemany per
        table. Conversations created here go to ``learned`` (cached once committed)."""
        if not jobs:
            return []
        ids = [self._conversation_id(conn, job, learned) for job in jobs]
        counts: dict[str, int] = {}
        last_at: dict[str, float] = {}
        for job, conversation in zip(jobs, ids, strict=True):
            counts[conversation] = counts.get(conversation, 0) + 1
            last_at[conversation] = job.now
        if len(counts) == 1:
            ((conversation, count),) = counts.items()
            step: Any = count
            at: Any = last_at[conversation]
        else:
            step = sa.case(counts, value=conversations.c.id)
            at = sa.case(last_at, value=conversations.c.id)
        reserved = (
            conn.execute(
                conversations.update()
                .where(conversations.c.id.in_(list(counts)))
                .values(next_seq=conversations.c.next_seq + step, last_message_at=at)
                .returning(conversations.c.id, conversations.c.next_seq)
            )
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
            message_id = _new_id("m_")
            now = job.now
            message_rows.append(
                {
                    "id": message_id,
                    "tenant": job.tenant,
                    "conversation_id": conversation,
                    "seq": seq,
                    "direction": "outbound",
                    "content": _dump_content(job.request.content),
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
            if job.idempotency_key is not None:
                keyed.append({"t": job.tenant, "k": job.idempotency_key, "m": message_id})
            written.append(
                Message(
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
            )
        conn.execute(messages.insert(), message_rows)
        conn.execute(status_events.insert(), event_rows)
        conn.execute(outbox.insert(), outbox_rows)
        if keyed:
            conn.execute(
                idempotency.update()
                .where(
                    idempotency.c.tenant == sa.bindparam("t"),
                    idempotency.c.key == sa.bindparam("k"),
                )
                .values(message_id=sa.bindparam("m")),
                keyed,
            )
        return written

    def _conversation_id(
        self, conn: sa.Connection, job: _Job, learned: dict[_ConversationKey, str]
    ) -> str:
        """The conversation of ``job``, created when new (its ``next_seq`` is bumped by the
        caller)."""
        request = job.request
        key = (job.tenant, request.channel, request.account, request.recipient)
        known = self._conversation_ids.get(key) or learned.get(key)
        if known is None:
            known = _conversation(conn, job.tenant, request, job.now)
            learned[key] = known
        return known

    async def record_inbound(
        self,
        tenant: str,
        request: SendRequest,
        update_id: str,
        provider_message_id: str,
        now: float,
    ) -> Message | None:
        """Store a received message (``request.recipient`` is the other side); ``None`` when
        this provider update was already recorded (providers redeliver)."""
        async with self.transaction() as conn:
            seen = (
                await conn.execute(
                    sa.select(inbound_updates.c.message_id).where(
                        inbound_updates.c.channel == request.channel,
                        inbound_updates.c.account == request.account,
                        inbound_updates.c.update_id == update_id,
                    )
                )
            ).first()
            if seen is not None:
                return None
            _, _, message_id = await self._append(
                conn, tenant, request, "inbound", DeliveryStatus.DELIVERED, now, provider_message_id
            )
            await conn.execute(
                status_events.insert().values(
                    message_id=message_id, status=DeliveryStatus.DELIVERED.value, at=now
                )
            )
            await conn.execute(
                inbound_updates.insert().values(
                    channel=request.channel,
                    account=request.account,
                    update_id=update_id,
                    message_id=message_id,
                    received_at=now,
                )
            )
            recorded = await self._message(conn, tenant, message_id)
            if self.fanout is not None:
                await conn.run_sync(
                    self.fanout, tenant, "message.inbound", [(message_document(recorded), now)]
                )
            return recorded

    async def record_receipt(
        self,
        channel: str,
        account: str,
        provider_message_id: str,
        status: DeliveryStatus,
        now: float,
    ) -> Message | None:
        """A provider's ``delivered`` / ``read`` for a message we sent through ``account``.
        The message when its status moved; ``None`` when no such message is ours, or when the
        receipt would not move it forward (a repeat, a late ``delivered`` after ``read``)."""
        query = (
            sa.select(messages.c.id, messages.c.tenant, messages.c.status)
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .where(
                messages.c.provider_message_id == provider_message_id,
                messages.c.direction == "outbound",
                conversations.c.channel == channel,
                conversations.c.account == account,
            )
        )
        async with self.transaction() as conn:
            row = (await conn.execute(query)).first()
            if row is None or not advances(DeliveryStatus(row.status), status):
                return None
            await self._status(conn, row.id, status, now, None)
            message = await self._message(conn, row.tenant, row.id)
            await conn.run_sync(self._announce, [message], status.value, None, now)
            return message

    async def purge(self, older_than: float, batch: int = 1000) -> tuple[int, int]:
        """Forget idempotency keys and seen provider update ids recorded before
        ``older_than``, a batch per transaction (short write locks); ``(keys, updates)``."""
        keys = await self._purge(
            idempotency,
            (idempotency.c.tenant, idempotency.c.key),
            idempotency.c.created_at < older_than,
            batch,
        )
        updates = await self._purge(
            inbound_updates,
            (inbound_updates.c.channel, inbound_updates.c.account, inbound_updates.c.update_id),
            inbound_updates.c.received_at < older_than,
            batch,
        )
        return keys, updates

    async def _purge(self, table: sa.Table, key: tuple[Any, ...], old: Any, batch: int) -> int:
        removed = 0
        while True:
            async with self.transaction() as conn:
                chosen = sa.select(*key).where(old).limit(batch)
                result = await conn.execute(table.delete().where(sa.tuple_(*key).in_(chosen)))
            count = int(result.rowcount or 0)
            removed += count
            if count < batch:
                return removed

    def _announce(
        self,
        conn: sa.Connection,
        changed: Sequence[Message],
        status: str,
        detail: str | None,
        now: float | Sequence[float],
    ) -> None:
        """``message.status`` for each of ``changed`` (at ``now``, or at its own ``now[i]``)."""
        if self.fanout is None:
            return
        by_tenant: dict[str, list[tuple[dict[str, Any], float]]] = {}
        for n, message in enumerate(changed):
            at = now if isinstance(now, float | int) else now[n]
            data = status_document(message, status, detail)
            by_tenant.setdefault(message.tenant, []).append((data, at))
        for tenant, events in by_tenant.items():
            self.fanout(conn, tenant, "message.status", events)

    async def _reserve(self, tenant: str, key: str, body_hash: str, now: float) -> str | None:
        """Reserve ``key``; the earlier request's message id when it already completed."""
        async with self.transaction() as conn:
            # insert-or-nothing: concurrent first requests (PostgreSQL has no writer lock) find
            # one winner, and the others the row it made
            reserved = await conn.execute(
                _insert(conn, idempotency)
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
                raise IdempotencyConflict(
                    "this Idempotency-Key was used with a different request body; use a new key "
                    "for a new message"
                )
            if row.message_id is not None:
                return str(row.message_id)
            if row.lease_until > now:
                raise IdempotencyInFlight(
                    "the first request with this Idempotency-Key is still being processed; "
                    "retry in a moment"
                )
            # The first request's process died before completing: this one takes over.
            await conn.execute(
                idempotency.update()
                .where(idempotency.c.tenant == tenant, idempotency.c.key == key)
                .values(lease_until=now + IDEMPOTENCY_LEASE)
            )
            return None

    async def _append(
        self,
        conn: AsyncConnection,
        tenant: str,
        request: SendRequest,
        direction: str,
        status: DeliveryStatus,
        now: float,
        provider_message_id: str | None = None,
    ) -> tuple[str, int, str]:
        """Add a message at the end of its conversation: ``(conversation, seq, message id)``."""
        conversation = await conn.run_sync(_conversation, tenant, request, now)
        seq = await self._next_seq(conn, conversation)
        message_id = _new_id("m_")
        await conn.execute(
            messages.insert().values(
                id=message_id,
                tenant=tenant,
                conversation_id=conversation,
                seq=seq,
                direction=direction,
                content=_dump_content(request.content),
                status=status.value,
                created_at=now,
                provider_message_id=provider_message_id,
            )
        )
        return conversation, seq, message_id

    async def _next_seq(self, conn: AsyncConnection, conversation_id: str) -> int:
        seq = (
            await conn.execute(
                conversations.update()
                .where(conversations.c.id == conversation_id)
                .values(next_seq=conversations.c.next_seq + 1)
                .returning(conversations.c.next_seq)
            )
        ).scalar_one()
        return int(seq) - 1

    # ---- reading -------------------------------------------------------------------------------

    async def get(self, tenant: str, message_id: str) -> Message:
        async with self.engine.connect() as conn:
            return await self._message(conn, tenant, message_id)

    async def _message(self, conn: AsyncConnection, tenant: str, message_id: str) -> Message:
        row = (
            await conn.execute(
                sa.select(messages).where(messages.c.id == message_id, messages.c.tenant == tenant)
            )
        ).first()
        if row is None:
            raise NotFound(f"no message {message_id!r}")
        events = (
            await conn.execute(
                sa.select(status_events)
                .where(status_events.c.message_id == message_id)
                .order_by(status_events.c.id)
            )
        ).all()
        return _to_message(row, events)

    async def conversations(
        self, tenant: str, cursor: str | None, limit: int
    ) -> Page[Conversation]:
        query = sa.select(conversations).where(conversations.c.tenant == tenant)
        if cursor is not None:
            query = query.where(conversations.c.id > _decode_cursor(cursor))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(conversations.c.id).limit(limit + 1))).all()
        items = tuple(_to_conversation(r) for r in rows[:limit])
        more = len(rows) > limit
        return Page(items, _encode_cursor(items[-1].id) if more and items else None)

    async def messages(
        self, tenant: str, conversation_id: str, cursor: str | None, limit: int
    ) -> Page[Message]:
        async with self.engine.connect() as conn:
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
                query = query.where(messages.c.seq > _decode_seq_cursor(cursor))
            ids = (await conn.execute(query.order_by(messages.c.seq).limit(limit + 1))).scalars()
            listed = list(ids)
            items = tuple([await self._message(conn, tenant, i) for i in listed[:limit]])
        more = len(listed) > limit
        return Page(items, _encode_cursor(str(items[-1].seq)) if more and items else None)

    # ---- the outbox ----------------------------------------------------------------------------

    async def recover(self) -> int:
        async with self.transaction() as conn:
            result = await conn.execute(
                outbox.update().where(outbox.c.state == "inflight").values(state="pending")
            )
            return int(result.rowcount or 0)

    async def claim(self, now: float, limit: int) -> list[OutboxItem]:
        return await self._write(self._claim, now, limit)

    def _claim(self, conn: sa.Connection, now: float, limit: int) -> list[OutboxItem]:
        # The due heads, oldest first: a pending row is a head when its conversation has
        # nothing in flight and nothing pending before it. Walked in (state, available_at)
        # order, the scan stops after ``limit`` heads; a GROUP BY over every pending row cost
        # ~10 ms per round with a backlog of thousands, the writer lock held meanwhile.
        other = outbox.alias("other")
        inflight = sa.exists().where(
            other.c.state == "inflight", other.c.conversation_id == outbox.c.conversation_id
        )
        before = sa.exists().where(
            other.c.state == "pending",
            other.c.conversation_id == outbox.c.conversation_id,
            other.c.seq < outbox.c.seq,
        )
        query = (
            sa.select(outbox)
            .where(outbox.c.state == "pending", outbox.c.available_at <= now, ~inflight, ~before)
            .order_by(outbox.c.available_at)
            .limit(limit)
        )
        rows = conn.execute(query).all()
        if not rows:
            return []
        conn.execute(
            outbox.update()
            .where(outbox.c.message_id.in_([r.message_id for r in rows]))
            .values(state="inflight")
        )
        ids = [r.message_id for r in rows]
        found = {
            m.id: m for m in conn.execute(sa.select(messages).where(messages.c.id.in_(ids))).all()
        }
        threads = {
            c.id: c
            for c in conn.execute(
                sa.select(conversations).where(
                    conversations.c.id.in_({r.conversation_id for r in rows})
                )
            ).all()
        }
        return [
            OutboxItem(
                _to_message(found[r.message_id], ()),
                _to_conversation(threads[r.conversation_id]),
                int(r.attempts),
                Origin(r.trace_context, r.request_id),
                tuple(json.loads(r.parts_done)) if r.parts_done else (),
            )
            for r in rows
        ]

    async def sent(self, item: OutboxItem, provider_id: str, now: float) -> None:
        """Record a delivery; concurrent ones (a dispatcher round) share a transaction with
        each other and with concurrent accepts."""
        await self._commit_in_group(_Sent(item, provider_id, now))

    def _record_sent(self, conn: sa.Connection, done: list[_Sent]) -> None:
        if not done:
            return
        ids = [d.item.message.id for d in done]
        conn.execute(outbox.delete().where(outbox.c.message_id.in_(ids)))
        current = {
            row[0]: DeliveryStatus(row[1])
            for row in conn.execute(
                sa.select(messages.c.id, messages.c.status).where(messages.c.id.in_(ids))
            ).all()
        }
        sent = DeliveryStatus.SENT
        advanced = [d for d in done if advances(current[d.item.message.id], sent)]
        conn.execute(
            messages.update()
            .where(messages.c.id == sa.bindparam("i"))
            .values(
                provider_message_id=sa.bindparam("p"),
                status=sa.case(
                    (sa.bindparam("a", type_=sa.Boolean), sent.value), else_=messages.c.status
                ),
            ),
            [
                {
                    "i": d.item.message.id,
                    "p": d.provider_id,
                    "a": advances(current[d.item.message.id], sent),
                }
                for d in done
            ],
        )
        if advanced:
            conn.execute(
                status_events.insert(),
                [
                    {"message_id": d.item.message.id, "status": sent.value, "at": d.now}
                    for d in advanced
                ],
            )
        self._announce(conn, [d.item.message for d in done], "sent", None, [d.now for d in done])

    async def retry(
        self, item: OutboxItem, at: float, reason: str, now: float, done: tuple[str, ...] = ()
    ) -> None:
        async with self.transaction() as conn:
            await conn.execute(_outcome(item, "pending", reason, done, available_at=at))

    async def dead(
        self, item: OutboxItem, reason: str, now: float, done: tuple[str, ...] = ()
    ) -> None:
        """Dead-lettered; ``done`` as for :meth:`retry` (a replay sends only the rest)."""
        async with self.transaction() as conn:
            await conn.execute(_outcome(item, "dead", reason, done))
            await self._status(conn, item.message.id, DeliveryStatus.FAILED, now, reason)
            await conn.run_sync(self._announce, [item.message], "failed", reason, now)

    async def dead_letters(
        self, tenant: str, cursor: str | None, limit: int
    ) -> Page[tuple[Message, str]]:
        """Dead-lettered messages of ``tenant`` with their last error, oldest first."""
        query = (
            sa.select(outbox.c.message_id, outbox.c.last_error)
            .join(messages, messages.c.id == outbox.c.message_id)
            .where(outbox.c.state == "dead", messages.c.tenant == tenant)
        )
        if cursor is not None:
            query = query.where(outbox.c.message_id > _decode_cursor(cursor))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(outbox.c.message_id).limit(limit + 1))).all()
            items = tuple(
                [
                    (await self._message(conn, tenant, r.message_id), r.last_error or "")
                    for r in rows[:limit]
                ]
            )
        more = len(rows) > limit
        return Page(items, _encode_cursor(items[-1][0].id) if more and items else None)

    async def replay(self, tenant: str, message_id: str, now: float) -> Message:
        """Put a dead letter back in the outbox, from attempt zero; its status is queued again."""
        async with self.transaction() as conn:
            owned = (
                await conn.execute(
                    sa.select(outbox.c.message_id)
                    .join(messages, messages.c.id == outbox.c.message_id)
                    .where(
                        outbox.c.message_id == message_id,
                        outbox.c.state == "dead",
                        messages.c.tenant == tenant,
                    )
                )
            ).scalar()
            if owned is None:
                raise NotFound(f"no dead letter {message_id!r}")
            await conn.execute(
                outbox.update()
                .where(outbox.c.message_id == message_id)
                .values(state="pending", attempts=0, available_at=now, last_error=None)
            )
            await conn.execute(
                messages.update()
                .where(messages.c.id == message_id)
                .values(status=DeliveryStatus.QUEUED.value)
            )
            await conn.execute(
                status_events.insert().values(
                    message_id=message_id,
                    status=DeliveryStatus.QUEUED.value,
                    at=now,
                    detail="replayed",
                )
            )
            return await self._message(conn, tenant, message_id)

    async def dead_count(self) -> int:
        async with self.engine.connect() as conn:
            count = await conn.execute(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.state == "dead")
            )
            return int(count.scalar_one())

    async def depth(self) -> int:
        async with self.engine.connect() as conn:
            count = await conn.execute(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.state != "dead")
            )
            return int(count.scalar_one())

    async def _status(
        self,
        conn: AsyncConnection,
        message_id: str,
        status: DeliveryStatus,
        now: float,
        detail: str | None,
    ) -> None:
        current = (
            await conn.execute(sa.select(messages.c.status).where(messages.c.id == message_id))
        ).scalar_one()
        if not advances(DeliveryStatus(current), status):
            return
        await conn.execute(
            messages.update().where(messages.c.id == message_id).values(status=status.value)
        )
        await conn.execute(
            status_events.insert().values(
                message_id=message_id, status=status.value, at=now, detail=detail
            )
        )


def _conversation(conn: sa.Connection, tenant: str, request: SendRequest, now: float) -> str:
    where = (
        (conversations.c.tenant == tenant)
        & (conversations.c.channel == request.channel)
        & (conversations.c.account == request.account)
        & (conversations.c.recipient == request.recipient)
    )
    found = conn.execute(sa.select(conversations.c.id).where(where)).scalar()
    if found is not None:
        conn.execute(
            conversations.update().where(conversations.c.id == found).values(last_message_at=now)
        )
        return str(found)
    # insert-or-nothing: a concurrent first message (inbound and outbound at once, on
    # PostgreSQL) may create it first; then its id is the one
    conn.execute(
        _insert(conn, conversations)
        .values(
            id=_new_id("c_"),
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


def _outcome(item: OutboxItem, state: str, reason: str, done: tuple[str, ...], **more: Any) -> Any:
    """The outbox row of a failed attempt: its state, the error, and the parts delivered so far
    (this attempt's, else the earlier ones')."""
    parts = done or item.done
    return (
        outbox.update()
        .where(outbox.c.message_id == item.message.id)
        .values(
            state=state,
            attempts=item.attempts + 1,
            last_error=reason,
            parts_done=json.dumps(list(parts)) if parts else None,
            **more,
        )
    )


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # an accepted message survives power loss
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# ---- rows <-> value objects ----------------------------------------------------------------


def _dump_content(content: Content) -> str:
    return json.dumps(content_document(content), separators=(",", ":"))


def _load_content(raw: str) -> Content:
    doc = json.loads(raw)
    return Content(
        text=doc["text"],
        attachments=tuple(Attachment(**a) for a in doc["attachments"]),
        location=Location(**doc["location"]) if doc["location"] else None,
        reply_to=doc["reply_to"],
        template=(
            Template(
                doc["template"]["name"],
                doc["template"]["language"],
                tuple(doc["template"]["parameters"]),
            )
            if doc["template"]
            else None
        ),
        buttons=tuple(Button(**b) for b in doc["buttons"]),
        extensions=tuple((k, v) for k, v in doc["extensions"]),
    )


def _to_message(row: Any, events: Sequence[Any]) -> Message:
    return Message(
        id=row.id,
        tenant=row.tenant,
        conversation_id=row.conversation_id,
        seq=int(row.seq),
        direction=row.direction,
        content=_load_content(row.content),
        status=DeliveryStatus(row.status),
        created_at=float(row.created_at),
        provider_message_id=row.provider_message_id,
        history=tuple(StatusEvent(DeliveryStatus(e.status), float(e.at), e.detail) for e in events),
    )


def _to_conversation(row: Any) -> Conversation:
    return Conversation(
        id=row.id,
        tenant=row.tenant,
        channel=row.channel,
        account=row.account,
        recipient=row.recipient,
        last_message_at=row.last_message_at,
    )


def _encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("cursor is not one this API returned", field="cursor") from None


def _decode_seq_cursor(cursor: str) -> int:
    decoded = _decode_cursor(cursor)
    if not decoded.isascii() or not decoded.isdigit():
        raise InvalidRequest("cursor is not one this API returned", field="cursor")
    return int(decoded)
