"""The outbox and its dead letters: claims with leases, outcomes, replay.

- **Leases.** A claim marks each row in flight for one worker (``leased_by``) until
  ``lease_until``; the worker renews while it delivers. A row whose lease ran out is the
  worker's no more: any claim (and :meth:`SqlOutbox.recover` at start) puts it back to pending
  and hands it out again (its first holder is presumed dead; if it was only slow, the provider
  sees the message twice: the one case of a duplicate send). A live lease is never taken.
- **Per-conversation FIFO, any number of workers.** Each conversation's turn is one row, its
  *head* (``outbox.head``): the row in flight, or else its lowest pending ``seq``. A claim
  hands out pending heads only, so a conversation has at most one message in flight and they
  leave in order. The flag is kept where the turn passes (:func:`pass_turn`): an accept into
  a conversation with nothing waiting, a delivery, a dead letter, a replay. Claims walk an
  index of the due heads: their cost follows the number of conversations, not the backlog.
- **Concurrency (PostgreSQL).** An accept holds its conversations' rows (reserving their
  seqs) and share-locks their heads before it gives a head to a conversation without one
  (:func:`join_queue`). A delivery or a dead letter changes the head row itself, so it either
  commits first (the accept waits for the row, then sees the turn passed) or waits for the
  accept's commit (and then sees its rows when it passes the turn): a new row is never left
  without anyone to crown it, and deliveries never wait for the conversation's row, only for
  an accept touching that very head at that instant. A replay takes the conversation's row
  first (:func:`hold_turns`), as an accept does. Claims lock the heads they take ``FOR UPDATE
  SKIP LOCKED``: one head per conversation, so two claimers never take two messages of one
  conversation. SQLite has one writer at a time: its writes are serial anyway.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import sqlalchemy as sa

from chat4all.adapters.storage.engine import Database
from chat4all.adapters.storage.expressions import one_of
from chat4all.adapters.storage.leases import expire_leases, held, renew_leases
from chat4all.adapters.storage.rows import (
    decode_cursor,
    encode_cursor,
    load_message,
    to_conversation,
    to_message,
)
from chat4all.adapters.storage.schema import conversations, messages, outbox, status_events
from chat4all.adapters.storage.status import Announcer, set_status
from chat4all.domain.lease import holder_gone
from chat4all.domain.model import DeliveryStatus, Message, advances
from chat4all.errors import NotFound
from chat4all.ports import Backlog, Origin, OutboxItem, Page, Publishable

__all__ = ["SqlOutbox", "Sent", "Claim", "hold_turns", "join_queue", "pass_turn"]


@dataclass(frozen=True, slots=True)
class Sent:
    """One delivery waiting for its group commit."""

    item: OutboxItem
    provider_id: str
    now: float
    follow: float | None = None
    """A lease: claim the conversation's next due head for the same worker, in the same
    transaction (:meth:`SqlOutbox.follow_in`); ``None``: leave it to be claimed otherwise."""


@dataclass(frozen=True, slots=True)
class Claim:
    """One claim waiting for its group commit (:meth:`SqlOutbox.claim_in`'s arguments)."""

    now: float
    limit: int
    worker: str
    lease: float


class SqlOutbox:
    """:class:`~chat4all.ports.Outbox` on the ``outbox`` table."""

    def __init__(self, db: Database, announcer: Announcer) -> None:
        self._db = db
        self._announcer = announcer
        self.lapsed: Callable[[int], None] = lambda count: None
        """Told how many rows a claim put back to pending because their worker's lease ran out
        (each may have reached the provider already). Counted where the lease is reset, once
        per lapsed lease whichever claim, of whichever worker, later sends the row (the row's
        ``reclaimed`` flag reaches only the claim that reset it); called before the claim's
        commit, so a claim that then fails counts its resets again in the next one: an upper
        bound, never an undercount."""

    # ---- claims and leases ---------------------------------------------------------------------

    async def recover(self, now: float) -> int:
        return len(
            await self._db.write(expire_leases, outbox, outbox.c.message_id, now, holder_gone)
        )

    async def claim(self, now: float, limit: int, *, worker: str, lease: float) -> list[OutboxItem]:
        """A claim in a write transaction of its own (the store's group commit runs
        :meth:`claim_in` inside its batches instead)."""
        return await self._db.write(self._claim, now, limit, worker, lease)

    def claim_in(self, conn: sa.Connection, claims: Sequence[Claim]) -> list[list[OutboxItem]]:
        """``claims`` in the transaction of ``conn``, one after the other (each sees what the
        ones before it took); each one's items."""
        return [self._claim(conn, c.now, c.limit, c.worker, c.lease) for c in claims]

    def follow_in(self, conn: sa.Connection, done: Sequence[Sent]) -> list[list[OutboxItem]]:
        """After :meth:`record_sent` of ``done``, in its transaction: for each delivery with a
        ``follow`` lease, its conversation's next due head, claimed for the delivery's worker
        (the turn just passed to it; a head another claim holds is left to it); each one's
        items (none or one). A worker that keeps a busy conversation this way claims its
        messages one after the other without another round trip through the log."""
        wanted = [d for d in done if d.follow is not None]
        if not wanted:
            return [[] for _ in done]
        groups: dict[tuple[str, float], list[Sent]] = {}  # one claim per worker and lease
        for d in wanted:
            groups.setdefault((d.item.holder, d.follow or 0.0), []).append(d)
        claimed: dict[str, OutboxItem] = {}
        for (worker, lease), group in groups.items():
            now = max(d.now for d in group)
            threads = [d.item.conversation.id for d in group]
            for item in self._claim(conn, now, len(threads), worker, lease, threads=threads):
                claimed[item.conversation.id] = item
        return [
            [found]
            if d.follow is not None and (found := claimed.pop(d.item.conversation.id, None))
            else []
            for d in done
        ]

    async def renew(self, items: Sequence[OutboxItem], *, worker: str, until: float) -> None:
        if items:
            async with self._db.transaction() as conn:
                await conn.execute(
                    renew_leases(outbox, outbox.c.message_id, [i.message.id for i in items]),
                    {"worker": worker, "until": until},
                )

    async def claim_ids(
        self, now: float, ids: Sequence[str], *, worker: str, lease: float
    ) -> tuple[list[OutboxItem], dict[str, float]]:
        """Claim exactly ``ids`` (as the partitioned log handed them out) under the rules of
        :meth:`claim`: those that are due heads of conversations with nothing in flight. The
        claimed items, and the rest that may become claimable without a new publication: by id,
        the seconds after which to look again (a row in flight under another worker's lease:
        until it runs out; a conversation another claim held this instant: 1). Every other id is
        settled: gone (sent), dead, or pending but not a due head, which is marked unpublished
        so the relay publishes it again once it is one."""
        return await self._db.write(self._claim_ids, now, list(ids), worker, lease)

    def _claim_ids(
        self, conn: sa.Connection, now: float, ids: list[str], worker: str, lease: float
    ) -> tuple[list[OutboxItem], dict[str, float]]:
        if not ids:
            return [], {}
        claimed = self._claim(conn, now, len(ids), worker, lease, ids)
        mine = {item.message.id for item in claimed}
        rest = [i for i in ids if i not in mine]
        later: dict[str, float] = {}
        unpublished: list[str] = []
        for row in conn.execute(
            sa.select(outbox.c.message_id, outbox.c.state, outbox.c.lease_until).where(
                outbox.c.message_id.in_(rest)
            )
        ).all():
            if row.state == "inflight":
                later[row.message_id] = max(1.0, (row.lease_until or now) - now)
            elif row.state == "pending":
                unpublished.append(row.message_id)
        if unpublished:
            heads = set(
                conn.execute(
                    _HEADS.where(outbox.c.message_id.in_(unpublished)).with_only_columns(
                        outbox.c.message_id
                    ),
                    {"now": now, "limit": len(unpublished)},
                ).scalars()
            )
            # a due head left unclaimed: another claim held its conversation this instant
            later.update((i, 1.0) for i in heads)
            gone = [i for i in unpublished if i not in heads]
            if gone:
                conn.execute(_unpublish(outbox.update().where(outbox.c.message_id.in_(gone))))
        return claimed, later

    def _claim(
        self,
        conn: sa.Connection,
        now: float,
        limit: int,
        worker: str,
        lease: float,
        ids: Sequence[str] | None = None,
        threads: Sequence[str] | None = None,
    ) -> list[OutboxItem]:
        """The due heads (of ``ids``, or of the conversations ``threads``, when given), up to
        ``limit``, marked in flight for ``worker``. A claim of given conversations leaves the
        expired leases to the next claim of any (it comes from a delivery record)."""
        expired: Collection[str] = ()
        if threads is None:
            expired = expire_leases(conn, outbox, outbox.c.message_id, now)
            if expired:
                self.lapsed(len(expired))
        if threads is not None:
            heads = _HEADS_OF_THREADS
        elif ids is not None:
            heads = _HEADS_OF_IDS
        else:
            heads = _HEADS
        if conn.dialect.name == "postgresql":
            # a head another claim holds is skipped; one it took meanwhile is re-read, in flight
            heads = heads.with_for_update(skip_locked=True, of=outbox)
        bound = {
            "now": now,
            "limit": limit,
            "only": list(ids or ()),
            "threads": list(threads or ()),
        }
        rows = conn.execute(heads, bound).all()
        if not rows:
            return []
        taken = [r.message_id for r in rows]
        conn.execute(_TAKE, {"ids": taken, "worker": worker, "until": now + lease})
        found = {m.id: m for m in conn.execute(_MESSAGES, {"ids": taken}).all()}
        of = {
            c.id: c
            for c in conn.execute(
                _CONVERSATIONS, {"ids": list({r.conversation_id for r in rows})}
            ).all()
        }
        return [
            OutboxItem(
                _with_targets(conn, to_message(found[r.message_id], ())),
                to_conversation(of[r.conversation_id]),
                int(r.attempts),
                Origin(r.trace_context, r.request_id),
                tuple(json.loads(r.parts_done)) if r.parts_done else (),
                holder=worker,
                reclaimed=r.message_id in expired,
            )
            for r in rows
        ]

    # ---- the partitioned log's relay and dead letters ----------------------------------------

    async def relay(
        self,
        now: float,
        limit: int,
        horizon: float,
        publish: Callable[[list[Publishable]], Awaitable[Sequence[Publishable]]],
        lost: bool = True,
    ) -> list[Publishable]:
        """One round of the relay: the due heads of conversations with nothing in flight that
        are not published for their present attempt (or were published more than ``horizon``
        seconds ago and are still pending), handed to ``publish``; those it returns are marked
        published, in the same transaction. ``lost``: look for the rows past the horizon too
        (a walk over everything published and pending: the relay does it now and then; the
        unpublished are found through their own index). On PostgreSQL the rows stay locked meanwhile
        (``FOR UPDATE SKIP LOCKED``): relays running at once publish different rows. A crash
        before the commit publishes the same rows again under the same ids (the log's
        duplicate window drops them)."""
        fresh = _heads_of(now, limit).where(outbox.c.published_at.is_(None))
        again = _heads_of(now, limit).where(outbox.c.published_at < now - horizon)
        async with self._db.transaction() as conn:
            if conn.dialect.name == "postgresql":
                fresh = fresh.with_for_update(skip_locked=True, of=outbox)
                again = again.with_for_update(skip_locked=True, of=outbox)
            rows = list((await conn.execute(fresh)).all())
            if lost and len(rows) < limit:
                rows += (await conn.execute(again.limit(limit - len(rows)))).all()
            if not rows:
                return []
            batch = [
                Publishable(
                    r.message_id,
                    r.conversation_id,
                    int(r.attempts),
                    int(r.published_gen) + (r.published_at is not None),
                    r.published_at is not None,
                )
                for r in rows
            ]
            done = list(await publish(batch))
            if done:
                await conn.execute(
                    outbox.update()
                    .where(outbox.c.message_id == sa.bindparam("i"))
                    .values(published_at=now, published_gen=sa.bindparam("g")),
                    [{"i": p.message_id, "g": p.generation} for p in done],
                )
            return done

    async def dead_heads(self, ids: Sequence[str], reason: str, now: float) -> list[Message]:
        """Dead-letter those of ``ids`` that are due heads with nothing in flight (rows under a
        lease that ran out are pending again first): the log handed them out its last time
        without an outcome, the workers that took them presumably crashed on them. Their
        messages are ``failed`` with ``reason``; those messages."""
        if not ids:
            return []
        async with self._db.transaction() as conn:
            expired = await conn.run_sync(
                lambda c: expire_leases(c, outbox, outbox.c.message_id, now)
            )
            if expired:
                self.lapsed(len(expired))
            query = (
                _heads_of(now, len(ids))
                .where(outbox.c.message_id.in_(list(ids)))
                .with_only_columns(outbox.c.message_id)
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True, of=outbox)
            found = list((await conn.execute(query)).scalars())
            if not found:
                return []
            await conn.execute(
                outbox.update()
                .where(outbox.c.message_id.in_(found))
                .values(
                    state="dead", head=False, last_error=reason, leased_by=None, lease_until=None
                )
            )
            rows = (await conn.execute(sa.select(messages).where(messages.c.id.in_(found)))).all()
            dead = [to_message(r, ()) for r in rows]
            await conn.run_sync(pass_turn, [m.conversation_id for m in dead])
            for message in dead:
                await set_status(conn, message.id, DeliveryStatus.FAILED, now, reason)
            await conn.run_sync(self._announcer.status, dead, "failed", reason, now)
            return dead

    # ---- outcomes ------------------------------------------------------------------------------

    def record_sent(self, conn: sa.Connection, done: Sequence[Sent]) -> None:
        """Deliveries: the rows go, the turn passes, the messages are ``sent`` (a batch in one
        transaction).

        A worker whose lease ran out may report late, after another took the row over: the
        message is ``sent`` all the same (the provider has it), but the row stays the new
        holder's, so its conversation stays busy until that delivery ends too (else the next
        message could overtake it). The first provider id is kept."""
        if not done:
            return
        ids = [d.item.message.id for d in done]
        conn.execute(_DELIVERED, [{"i": d.item.message.id, "h": d.item.holder} for d in done])
        pass_turn(conn, [d.item.conversation.id for d in done])
        current = {
            row[0]: DeliveryStatus(row[1]) for row in conn.execute(_STATUSES, {"ids": ids}).all()
        }
        sent = DeliveryStatus.SENT
        advanced = [d for d in done if advances(current[d.item.message.id], sent)]
        conn.execute(
            _SENT,
            [
                {
                    "i": d.item.message.id,
                    "p": d.provider_id,
                    "a": advances(current[d.item.message.id], sent),
                    "t": d.now,
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
            self._announcer.status(
                conn, [d.item.message for d in advanced], "sent", None, [d.now for d in advanced]
            )

    async def retry(
        self,
        item: OutboxItem,
        at: float,
        reason: str,
        now: float,
        done: tuple[str, ...] = (),
        counted: bool = True,
    ) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                _outcome(item, "pending", reason, done, counted=counted, available_at=at)
            )

    async def due_now(self, channel: str, account: str, now: float) -> int:
        """The pending messages of ``channel`` ``account`` due at ``now`` (those waiting later:
        their account was paused and is resumed); how many."""
        mine = sa.select(conversations.c.id).where(
            conversations.c.channel == channel, conversations.c.account == account
        )
        async with self._db.transaction() as conn:
            done = await conn.execute(
                outbox.update()
                .where(
                    outbox.c.state == "pending",
                    outbox.c.available_at > now,
                    outbox.c.conversation_id.in_(mine),
                )
                .values(available_at=now)
            )
            return int(done.rowcount or 0)

    async def dead(
        self, item: OutboxItem, reason: str, now: float, done: tuple[str, ...] = ()
    ) -> None:
        """Dead-lettered; ``done`` as for :meth:`retry` (a replay sends only the rest)."""
        async with self._db.transaction() as conn:
            if (await conn.execute(_outcome(item, "dead", reason, done))).rowcount == 0:
                return  # another worker holds it now (this one's lease ran out)
            await conn.run_sync(pass_turn, [item.conversation.id])
            await set_status(conn, item.message.id, DeliveryStatus.FAILED, now, reason)
            await conn.run_sync(self._announcer.status, [item.message], "failed", reason, now)

    # ---- dead letters --------------------------------------------------------------------------

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
            query = query.where(outbox.c.message_id > decode_cursor(cursor))
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(outbox.c.message_id).limit(limit + 1))).all()
            items = tuple(
                [
                    (await load_message(conn, tenant, r.message_id), r.last_error or "")
                    for r in rows[:limit]
                ]
            )
        more = len(rows) > limit
        return Page(items, encode_cursor(items[-1][0].id) if more and items else None)

    async def replay(self, tenant: str, message_id: str, now: float) -> Message:
        """Put a dead letter back in the outbox, from attempt zero; its status is queued again.
        It takes its conversation's turn unless a message of it is in flight (then it follows
        that one): it is older than the rows waiting."""
        async with self._db.transaction() as conn:
            owned = (
                await conn.execute(
                    sa.select(outbox.c.conversation_id)
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
            await conn.run_sync(hold_turns, [owned])
            await conn.execute(
                outbox.update()
                .where(outbox.c.message_id == message_id)
                .values(
                    state="pending",
                    attempts=0,
                    available_at=now,
                    last_error=None,
                    published_at=None,
                    published_gen=outbox.c.published_gen + 1,
                )
            )
            await conn.execute(  # a waiting head of the conversation waits behind it again
                outbox.update()
                .where(
                    outbox.c.conversation_id == owned,
                    outbox.c.state == "pending",
                    outbox.c.head,
                )
                .values(head=False)
            )
            await conn.run_sync(pass_turn, [owned])
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
            return await load_message(conn, tenant, message_id)

    async def dead_count(self) -> int:
        async with self._db.engine.connect() as conn:
            count = await conn.execute(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.state == "dead")
            )
            return int(count.scalar_one())

    async def depth(self) -> int:
        async with self._db.engine.connect() as conn:
            count = await conn.execute(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.state != "dead")
            )
            return int(count.scalar_one())

    async def backlog(self, now: float, count_up_to: int = 0) -> Backlog:
        """One statement: the oldest due head's ``available_at`` (the claim's own walk, limit
        1) and, when asked, the waiting rows counted up to ``count_up_to + 1`` (so its cost is
        bounded by the bound, not by the backlog)."""
        oldest = _heads_of(now, 1).with_only_columns(outbox.c.available_at).scalar_subquery()
        columns: list[Any] = [oldest]
        if count_up_to > 0:
            waiting = (
                sa.select(outbox.c.message_id)
                .where(outbox.c.state.in_(("pending", "inflight")))
                .limit(count_up_to + 1)
                .subquery()
            )
            columns.append(sa.select(sa.func.count()).select_from(waiting).scalar_subquery())
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(sa.select(*columns))).one()
        due = row[0]
        return Backlog(
            max(0.0, now - float(due)) if due is not None else 0.0,
            int(row[1]) if count_up_to > 0 else 0,
        )


def _heads_of(now: float, limit: int) -> sa.Select[Any]:
    """:data:`_HEADS` with ``now`` and ``limit`` bound (for the statements built on it)."""
    return _HEADS.params(now=now, limit=limit)


def hold_turns(conn: sa.Connection, conversation_ids: Iterable[str]) -> None:
    """PostgreSQL: lock the rows of ``conversation_ids`` (in id order, so transactions that
    hold several never deadlock) until the commit, as an accept reserving their seqs does: an
    accept's batch takes them first, and a replay (it gives a conversation a pending row
    without changing its head, so an accept's share lock on the head would not meet it).
    SQLite: nothing (one writer at a time)."""
    if conn.dialect.name == "postgresql":
        ids = sorted(set(conversation_ids))
        if ids:
            conn.execute(_HOLD, {"ids": ids})


def join_queue(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """An accept's outbox ``rows``, in seq order: each conversation's first of them is its
    head when the conversation has none (then nothing of it was waiting: a conversation with
    rows waiting always has a head). On PostgreSQL the conversations' heads are locked ``FOR
    SHARE`` first: a head a delivery or a dead letter is changing is waited for (then it is
    seen gone), and one still there cannot change until this commit (then that change sees
    these rows when it passes the turn). Under the conversations' row locks of the seq
    reservation."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(_WATCH, {"ids": sorted({r["conversation_id"] for r in rows})})
    seen: set[str] = set()
    for row in rows:
        row["first"] = row["conversation_id"] not in seen
        row["thread"] = row["conversation_id"]
        seen.add(row["conversation_id"])
    conn.execute(_JOIN, rows)


def pass_turn(conn: sa.Connection, conversation_ids: Iterable[str]) -> None:
    """Each of ``conversation_ids`` without a head gets one, its lowest pending row (after its
    head went: sent, dead). A conversation that has a head keeps it."""
    ids = sorted(set(conversation_ids))
    if ids:
        conn.execute(_TURNS, {"ids": ids})


def _heads() -> sa.Select[Any]:
    """The due heads at ``:now``, oldest first, ``:limit`` of them (from their own index: the
    cost follows the heads, not the backlog). The state is written in the statement, not bound:
    a partial index serves a prepared statement's generic plan only when the statement itself
    implies the index's condition."""
    return (
        sa.select(outbox)
        .where(
            outbox.c.state == sa.literal_column("'pending'"),
            outbox.c.head,
            outbox.c.available_at <= sa.bindparam("now", type_=sa.Float),
        )
        .order_by(outbox.c.available_at)
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )


def _turns() -> sa.Update:
    """Each conversation of ``:ids`` without a head gets one: its lowest pending row. (A row
    in flight is always its conversation's head, so a conversation without one has none in
    flight.) One index probe per conversation: its head (``outbox_turns``), its lowest pending
    row (``outbox_due``)."""
    turn = outbox.alias("turn")
    lowest = (
        sa.select(turn.c.message_id)
        .where(
            turn.c.state == sa.literal_column("'pending'"),
            turn.c.conversation_id == conversations.c.id,
        )
        .order_by(turn.c.seq)
        .limit(1)
        .correlate(conversations)
        .scalar_subquery()
    )
    headless = ~(
        sa.exists()
        .where(turn.c.conversation_id == conversations.c.id, turn.c.head)
        .correlate(conversations)
    )
    return (
        outbox.update()
        .where(
            outbox.c.message_id.in_(
                sa.select(lowest)
                .select_from(conversations)
                .where(one_of(conversations.c.id, "ids"), headless)
            )
        )
        .values(head=True)
    )


# The statements of every claim and delivery record, built once: building one costs more than
# running it (~50 µs of SQLAlchemy per statement, several per dispatcher round).
_HEADS: Final = _heads()
_HEADS_OF_IDS: Final = _HEADS.where(one_of(outbox.c.message_id, "only"))
_HEADS_OF_THREADS: Final = _HEADS.where(one_of(outbox.c.conversation_id, "threads"))
_TURNS: Final = _turns()
_WATCH: Final = (
    sa.select(outbox.c.message_id)
    .where(one_of(outbox.c.conversation_id, "ids"), outbox.c.head)
    .with_for_update(read=True)
)
"""The heads of ``:ids`` ``FOR SHARE`` (an accept's, :func:`join_queue`)."""


def _join() -> sa.Insert:
    """An accepted row, its head flag computed: ``:first`` of its batch in its conversation
    (``:thread``) and the conversation without a head."""
    other = outbox.alias("other")
    headless = ~sa.exists().where(
        other.c.conversation_id == sa.bindparam("thread", type_=sa.String), other.c.head
    )
    return outbox.insert().values(head=sa.and_(sa.bindparam("first", type_=sa.Boolean), headless))


_JOIN: Final = _join()
_HOLD: Final = (
    sa.select(conversations.c.id)
    .where(one_of(conversations.c.id, "ids"))
    .order_by(conversations.c.id)
    .with_for_update(key_share=True)
)
"""The conversations' rows ``FOR NO KEY UPDATE``: the lock of an accept's seq reservation."""
_TAKE: Final = (
    outbox.update()
    .where(one_of(outbox.c.message_id, "ids"))
    .values(
        state="inflight",
        leased_by=sa.bindparam("worker", type_=sa.String),
        lease_until=sa.bindparam("until", type_=sa.Float),
    )
)
_MESSAGES: Final = sa.select(messages).where(one_of(messages.c.id, "ids"))
_CONVERSATIONS: Final = sa.select(conversations).where(one_of(conversations.c.id, "ids"))
_DELIVERED: Final = outbox.delete().where(
    outbox.c.message_id == sa.bindparam("i"),
    sa.or_(
        outbox.c.state != "inflight",
        outbox.c.leased_by.is_(None),
        outbox.c.leased_by == sa.bindparam("h", type_=sa.String),
        sa.bindparam("h", type_=sa.String) == "",
    ),
)
"""A delivered row goes, unless another worker has taken it over since (``:h``: the holder
that delivered it)."""
_STATUSES: Final = sa.select(messages.c.id, messages.c.status).where(one_of(messages.c.id, "ids"))
_SENT: Final = (
    messages.update()
    .where(messages.c.id == sa.bindparam("i"))
    .values(
        provider_message_id=sa.func.coalesce(messages.c.provider_message_id, sa.bindparam("p")),
        status=sa.case(
            (sa.bindparam("a", type_=sa.Boolean), DeliveryStatus.SENT.value),
            else_=messages.c.status,
        ),
        # when it reached the provider: what a watermark receipt is compared with
        sent_at=sa.func.coalesce(messages.c.sent_at, sa.bindparam("t", type_=sa.Float)),
    )
)


def _outcome(
    item: OutboxItem,
    state: str,
    reason: str,
    done: tuple[str, ...],
    counted: bool = True,
    **more: Any,
) -> Any:
    """The outbox row of a failed attempt: its state, the error, the attempts (this one too
    when ``counted``) and the parts delivered so far (this attempt's, else the earlier ones');
    only while ``item``'s worker still holds it."""
    parts = done or item.done
    return held(outbox, outbox.c.message_id, item.message.id, item.holder).values(
        state=state,
        attempts=item.attempts + 1 if counted else item.attempts,
        last_error=reason,
        parts_done=json.dumps(list(parts)) if parts else None,
        head=state != "dead",
        leased_by=None,
        lease_until=None,
        published_at=None,
        published_gen=outbox.c.published_gen + 1,
        **more,
    )


def _unpublish(update: Any) -> Any:
    """``update`` marking its rows not published (for their next state), under a new
    generation: the relay publishes them again with a message id the log has not seen."""
    return update.values(published_at=None, published_gen=outbox.c.published_gen + 1)


def _with_targets(conn: sa.Connection, message: Message) -> Message:
    """``message`` with the provider's ids of the messages its reply and reaction name (for
    the connector: providers name messages by their own ids). Looked up at claim time, as the
    target (earlier in the conversation) has been sent by then; a target not sent (yet, or
    ever) stays ``None`` and the connector sends without it or refuses."""
    content = message.content
    reaction = content.reaction
    wanted = {
        t
        for t in (
            content.reply_to if content.reply_to_provider_id is None else None,
            reaction.message_id
            if reaction is not None and reaction.provider_message_id is None
            else None,
        )
        if t is not None
    }
    if not wanted:
        return message
    ids = dict(
        conn.execute(
            sa.select(messages.c.id, messages.c.provider_message_id).where(
                messages.c.id.in_(wanted), messages.c.tenant == message.tenant
            )
        ).all()
    )
    if content.reply_to is not None and content.reply_to_provider_id is None:
        content = replace(content, reply_to_provider_id=ids.get(content.reply_to))
    if reaction is not None and reaction.provider_message_id is None:
        found = ids.get(reaction.message_id) if reaction.message_id else None
        content = replace(content, reaction=replace(reaction, provider_message_id=found))
    return replace(message, content=content)
