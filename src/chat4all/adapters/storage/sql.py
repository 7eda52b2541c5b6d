"""The hub's store on SQLAlchemy Core (SQLite in WAL mode by default, PostgreSQL for several
processes): one object composed of the parts, each a module of its own.

- :mod:`.schema`: every table; :mod:`.engine`: connections and transactions (SQLite's writer
  thread and checkpointer); :mod:`.group_commit`: concurrent writes in one transaction;
- :mod:`.messages`: accepting and reading messages, idempotency; :mod:`.outbox`: claims with
  leases, outcomes, dead letters; :mod:`.inbound`: received messages and receipts;
  :mod:`.status`: status events and their announcement (stored live events);
  :mod:`.retention`: purging old records; :mod:`.rows`: rows <-> value objects.

Accepts, delivery records and the dispatcher's claims share a group commit: concurrent ones are
written in one transaction (one fsync for many), and each caller returns only after its own
commit, so once ``accept`` returns the message survives ``kill -9``. A claim rides along with the
accepts and records waiting beside it rather than paying a commit of its own: with the disk's
flush the dearest part of a write, a claim per dispatcher round in its own transaction took
commits, hence throughput, from the accepts.

The hot calls (``accept``, ``claim``, ``record``: a delivery recorded) are timed as their callers
wait for them, group commit included, and told to :attr:`SqlStore.observe` (the hub's
``chat4all_store_seconds`` histogram).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chat4all.adapters.storage.engine import (
    SQLITE_BUSY_MS,
    Database,
    PostgresLimits,
    sqlite_url,
)
from chat4all.adapters.storage.group_commit import GroupCommitter
from chat4all.adapters.storage.inbound import InboundLog, Outcome
from chat4all.adapters.storage.messages import ConversationKey, Job, MessageLog
from chat4all.adapters.storage.outbox import Claim, Sent, SqlOutbox, hold_turns
from chat4all.adapters.storage.retention import Retention
from chat4all.adapters.storage.schema import live_events, metadata
from chat4all.adapters.storage.status import Announcer, Fanout
from chat4all.domain.model import Content, Conversation, DeliveryStatus, Message
from chat4all.ports import (
    NO_ORIGIN,
    Accepted,
    Backlog,
    Origin,
    OutboxItem,
    Page,
    Pending,
    SendRequest,
)
from chat4all.service_layer.events import Event

__all__ = ["SqlStore", "Fanout", "metadata", "sqlite_url", "SETTLE"]

SETTLE: Final = 10.0
"""Seconds a PostgreSQL transaction may hold a live event's id before it commits (and the
clocks of two hosts differ), at most: a replay starts that far before the id it resumes from."""


class SqlStore:
    """:class:`~chat4all.ports.MessageStore` and :class:`~chat4all.ports.Outbox` in one."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.announcer = Announcer()
        self.message_log = MessageLog(db)
        self.outbox = SqlOutbox(db, self.announcer)
        self.inbound = InboundLog(db, self.announcer)
        self.retention = Retention(db)
        self._commits: GroupCommitter[Job | Sent | Claim, Message | list[OutboxItem]] = (
            GroupCommitter(self._write_batch)
        )
        self.observe: Callable[[str, float], None] = _unobserved
        """Told each hot call's operation (``accept``, ``claim``, ``record``) and its seconds;
        ``build_hub`` gives the hub's metrics (nothing by default)."""

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        sqlite_busy_ms: int = SQLITE_BUSY_MS,
        read_url: str = "",
        postgres: PostgresLimits | None = None,
    ) -> SqlStore:
        """The store at ``url``, migrated; ``read_url``: its read replica, ``postgres``: the
        pools and timeouts on PostgreSQL (see :meth:`Database.open`)."""
        return cls(
            await Database.open(
                url, sqlite_busy_ms=sqlite_busy_ms, read_url=read_url, postgres=postgres
            )
        )

    async def close(self) -> None:
        await self._commits.close()
        await self.db.close()

    @property
    def engine(self) -> AsyncEngine:
        return self.db.engine

    @property
    def migrated(self) -> tuple[str | None, str | None]:
        return self.db.migrated

    @property
    def fanout(self) -> Fanout | None:
        return self.announcer.fanout

    @fanout.setter
    def fanout(self, fanout: Fanout | None) -> None:
        self.announcer.fanout = fanout

    def transaction(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self.db.transaction()

    async def ready(self) -> bool:
        return await self.db.ready()

    # ---- the group commit ------------------------------------------------------------------

    async def _write_batch(
        self, batch: Sequence[Job | Sent | Claim]
    ) -> list[Message | list[OutboxItem]]:
        jobs = [job for job in batch if isinstance(job, Job)]
        sents = [job for job in batch if isinstance(job, Sent)]
        claims = [job for job in batch if isinstance(job, Claim)]
        learned: dict[ConversationKey, str] = {}
        written, followed, claimed = await self.db.write(self._write, jobs, sents, claims, learned)
        self.message_log.learn(learned)
        accepted, follows, items = iter(written), iter(followed), iter(claimed)
        results: list[Message | list[OutboxItem]] = []
        for job in batch:
            if isinstance(job, Job):
                results.append(next(accepted))
            else:
                results.append(next(items) if isinstance(job, Claim) else next(follows))
        return results

    def _write(
        self,
        conn: sa.Connection,
        jobs: list[Job],
        sents: list[Sent],
        claims: list[Claim],
        learned: dict[ConversationKey, str],
    ) -> tuple[list[Message], list[list[OutboxItem]], list[list[OutboxItem]]]:
        """Accepts, then deliveries (and the next heads they follow with), then claims: a
        claim sees the messages accepted and the conversations freed in its own transaction.
        The accepts' conversations are locked first, all at once in id order
        (:func:`hold_turns`): two batches of accepts never wait for each other in a cycle.
        (Two processes whose batches each mix accepts and deliveries, ``chat4all serve``
        twice on one PostgreSQL, may: the server breaks that deadlock and the group commit
        commits each change alone.)"""
        threads = self.message_log.threads(conn, jobs, learned)
        if len(set(threads)) > 1:  # one conversation is locked by its seq reservation alone
            hold_turns(conn, threads)
        written = self.message_log.insert_outbound(conn, jobs, threads)
        self.outbox.record_sent(conn, sents)
        followed = self.outbox.follow_in(conn, sents)
        return written, followed, self.outbox.claim_in(conn, claims)

    # ---- messages ------------------------------------------------------------------------------

    async def accept(
        self,
        tenant: str,
        request: SendRequest,
        idempotency_key: tuple[str, str] | None,
        now: float,
        origin: Origin = NO_ORIGIN,
    ) -> Accepted:
        began = time.perf_counter()
        if idempotency_key is not None:
            first = await self.message_log.reserve(tenant, *idempotency_key, now)
            if first is not None:
                self.observe("accept", time.perf_counter() - began)
                return Accepted(first, replayed=True)
        job = Job(tenant, request, idempotency_key[0] if idempotency_key else None, now, origin)
        message = await self._commits.submit(job)
        assert isinstance(message, Message)
        self.observe("accept", time.perf_counter() - began)
        return Accepted(message, replayed=False)

    async def get(self, tenant: str, message_id: str) -> Message:
        return await self.message_log.get(tenant, message_id)

    async def conversation(
        self, tenant: str, conversation_id: str
    ) -> tuple[Conversation, str | None]:
        return await self.message_log.conversation(tenant, conversation_id)

    async def conversations(
        self, tenant: str, cursor: str | None, limit: int
    ) -> Page[Conversation]:
        return await self.message_log.conversations(tenant, cursor, limit)

    async def messages(
        self, tenant: str, conversation_id: str, cursor: str | None, limit: int
    ) -> Page[Message]:
        return await self.message_log.messages(tenant, conversation_id, cursor, limit)

    # ---- the outbox ----------------------------------------------------------------------------

    async def recover(self, now: float) -> int:
        return await self.outbox.recover(now)

    async def claim(self, now: float, limit: int, *, worker: str, lease: float) -> list[OutboxItem]:
        """Due items, in the group commit (the transaction and fsync of the accepts and
        delivery records waiting beside it)."""
        began = time.perf_counter()
        items = await self._commits.submit(Claim(now, limit, worker, lease))
        assert isinstance(items, list)
        self.observe("claim", time.perf_counter() - began)
        return items

    async def renew(self, items: Sequence[OutboxItem], *, worker: str, until: float) -> None:
        await self.outbox.renew(items, worker=worker, until=until)

    async def claim_ids(
        self, now: float, ids: Sequence[str], *, worker: str, lease: float
    ) -> tuple[list[OutboxItem], dict[str, float]]:
        return await self.outbox.claim_ids(now, ids, worker=worker, lease=lease)

    async def dead_heads(self, ids: Sequence[str], reason: str, now: float) -> list[Message]:
        return await self.outbox.dead_heads(ids, reason, now)

    async def sent(self, item: OutboxItem, provider_id: str, now: float) -> None:
        """Record a delivery; concurrent ones (a dispatcher round) share a transaction with
        each other and with concurrent accepts."""
        await self.sent_then_next(item, provider_id, now)

    async def sent_then_next(
        self, item: OutboxItem, provider_id: str, now: float, follow: float | None = None
    ) -> list[OutboxItem]:
        """:meth:`sent`; with ``follow`` (a lease), the conversation's next due head is
        claimed for ``item``'s worker in the same transaction: none or that one item."""
        began = time.perf_counter()
        following = await self._commits.submit(Sent(item, provider_id, now, follow))
        self.observe("record", time.perf_counter() - began)
        assert isinstance(following, list)
        return following

    async def retry(
        self,
        item: OutboxItem,
        at: float,
        reason: str,
        now: float,
        done: tuple[str, ...] = (),
        counted: bool = True,
    ) -> None:
        await self.outbox.retry(item, at, reason, now, done, counted)

    async def due_now(self, channel: str, account: str, now: float) -> int:
        """Every waiting message of ``account`` due at once (its account resumed); how many."""
        return await self.outbox.due_now(channel, account, now)

    async def dead(
        self, item: OutboxItem, reason: str, now: float, done: tuple[str, ...] = ()
    ) -> None:
        await self.outbox.dead(item, reason, now, done)

    async def dead_letters(
        self, tenant: str, cursor: str | None, limit: int
    ) -> Page[tuple[Message, str]]:
        return await self.outbox.dead_letters(tenant, cursor, limit)

    async def replay(self, tenant: str, message_id: str, now: float) -> Message:
        return await self.outbox.replay(tenant, message_id, now)

    async def dead_count(self) -> int:
        return await self.outbox.dead_count()

    async def depth(self) -> int:
        return await self.outbox.depth()

    async def backlog(self, now: float, count_up_to: int = 0) -> Backlog:
        return await self.outbox.backlog(now, count_up_to)

    # ---- inbound, receipts, retention ----------------------------------------------------------

    async def record_inbound(
        self,
        tenant: str,
        request: SendRequest,
        update_id: str,
        provider_message_id: str,
        now: float,
        *,
        echo: bool = False,
        announce: bool = True,
    ) -> Message | None:
        return await self.inbound.record_inbound(
            tenant, request, update_id, provider_message_id, now, echo=echo, announce=announce
        )

    async def announce_inbound(
        self, tenant: str, message_id: str, content: Content, now: float
    ) -> Message | None:
        return await self.inbound.announce_inbound(tenant, message_id, content, now)

    async def pending_inbound(self, before: float, limit: int = 100) -> list[Pending]:
        return await self.inbound.pending_inbound(before, limit)

    async def record_receipt(
        self,
        channel: str,
        account: str,
        provider_message_id: str,
        status: DeliveryStatus,
        now: float,
    ) -> Message | None:
        return await self.inbound.record_receipt(channel, account, provider_message_id, status, now)

    async def apply_receipt(
        self,
        channel: str,
        account: str,
        status: DeliveryStatus,
        now: float,
        *,
        provider_message_id: str | None = None,
        detail: str | None = None,
        recipient: str | None = None,
        watermark: float | None = None,
    ) -> tuple[list[Message], Outcome]:
        return await self.inbound.apply_receipt(
            channel,
            account,
            status,
            now,
            provider_message_id=provider_message_id,
            detail=detail,
            recipient=recipient,
            watermark=watermark,
        )

    async def purge(self, older_than: float, batch: int = 1000) -> tuple[int, int]:
        return await self.retention.purge(older_than, batch)

    # ---- live events ---------------------------------------------------------------------------

    async def events_after(self, tenant: str, after: int, limit: int) -> list[Event]:
        """``tenant``'s stored live events with an id above ``after``, in id order."""
        query = (
            sa.select(live_events)
            .where(live_events.c.tenant == tenant, live_events.c.id > after)
            .order_by(live_events.c.id)
            .limit(limit)
        )
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [Event(r.id, r.tenant, r.type, json.loads(r.data), r.at) for r in rows]

    async def replay_from(self, tenant: str, after: int) -> int:
        """SQLite: ``after`` (one writer: ids commit in order). PostgreSQL: just below the
        tenant's first event stored within :data:`SETTLE` seconds before the event ``after``
        (its transaction may have committed after ``after``'s: a transaction holds its ids
        until it commits)."""
        if after <= 0 or self.db.engine.dialect.name == "sqlite":
            return after
        anchor = sa.select(live_events.c.at).where(live_events.c.id == after).scalar_subquery()
        query = sa.select(sa.func.min(live_events.c.id)).where(
            # bounded on both sides: the index on ``at`` reads about 2 x SETTLE s of events
            live_events.c.at.between(anchor - SETTLE, anchor + SETTLE),
            live_events.c.tenant == tenant,
            live_events.c.id <= after,
        )
        async with self.db.engine.connect() as conn:
            first = (await conn.execute(query)).scalar()
        return after if first is None else min(after, int(first) - 1)

    async def events_kept(self) -> tuple[int, int]:
        """The oldest and newest stored live event ids (``(0, 0)``: none)."""
        # two subqueries: SQLite reads one end of the index for a lone min() or max() only
        query = sa.select(
            sa.select(sa.func.min(live_events.c.id)).scalar_subquery(),
            sa.select(sa.func.max(live_events.c.id)).scalar_subquery(),
        )
        async with self.db.engine.connect() as conn:
            first, last = (await conn.execute(query)).one()
        return int(first or 0), int(last or 0)


def _unobserved(operation: str, seconds: float) -> None:
    """:attr:`SqlStore.observe` until the hub gives its metrics."""
