"""Schema migrations: the scripts build exactly the tables the code declares, and a database of
the first release (made before migrations existed) is adopted and upgraded with its data."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from chat4all.adapters.storage import migrate
from chat4all.adapters.storage.outbox import _HEADS
from chat4all.adapters.storage.sql import SqlStore, sqlite_url
from chat4all.domain.model import Content
from chat4all.ports import SendRequest


def test_the_revisions_form_one_line_from_the_baseline() -> None:
    revisions = migrate.revisions()
    assert revisions[0] == migrate.BASELINE
    assert revisions == sorted(revisions)
    assert len(set(revisions)) == len(revisions)


async def test_migrations_build_exactly_what_the_code_declares(tmp_path: Path) -> None:
    store = await SqlStore.open(sqlite_url(tmp_path / "fresh.db"))
    try:
        async with store.engine.connect() as conn:

            def diff(sync: sa.Connection) -> list[object]:
                return list(
                    compare_metadata(MigrationContext.configure(sync), migrate.target_metadata())
                )

            assert await conn.run_sync(diff) == []  # a change to a table needs a new migration
    finally:
        await store.close()


async def test_a_first_release_database_is_adopted_and_keeps_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sa.create_engine(f"sqlite:///{path}")
    with old.begin() as conn:  # the first release's tables, with no alembic_version table
        command.upgrade(migrate.alembic_config(conn), migrate.BASELINE)
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(
            sa.text(
                "INSERT INTO conversations (id, tenant, channel, account, recipient, next_seq) "
                "VALUES ('c_old', 't1', 'telegram', 'bot', '42', 2)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO messages (id, tenant, conversation_id, seq, direction, content, "
                "status, created_at) VALUES ('m_old', 't1', 'c_old', 1, 'outbound', :content, "
                "'sent', 1.0)"
            ),
            {"content": json.dumps(asdict(Content(text="before")))},
        )
    old.dispose()

    store = await SqlStore.open(sqlite_url(path))
    try:
        assert (await store.get("t1", "m_old")).content.text == "before"
        new = await store.accept(
            "t1", SendRequest("telegram", "bot", "42", Content(text="after")), None, 2.0
        )
        assert (new.message.conversation_id, new.message.seq) == ("c_old", 2)
        async with store.engine.connect() as conn:
            version = await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
        assert version == migrate.revisions()[-1]
    finally:
        await store.close()


async def test_an_outbox_from_before_the_heads_gets_one_head_per_conversation(
    tmp_path: Path,
) -> None:
    """A backlog written before ``outbox.head`` (0011): after the upgrade each conversation's
    turn is where the old rule put it (its row in flight, else its lowest pending seq), so
    claims and deliveries go on in order."""
    path = tmp_path / "backlog.db"
    old = sa.create_engine(f"sqlite:///{path}")
    rows = [  # conversation, seq, state
        ("c_busy", 1, "inflight"),
        ("c_busy", 2, "pending"),
        ("c_idle", 3, "dead"),
        ("c_idle", 4, "pending"),
        ("c_idle", 5, "pending"),
        ("c_back", 1, "pending"),  # a replayed dead letter behind the one in flight
        ("c_back", 2, "inflight"),
    ]
    with old.begin() as conn:
        command.upgrade(migrate.alembic_config(conn), "0011")
        for conversation in {r[0] for r in rows}:
            conn.execute(
                sa.text(
                    "INSERT INTO conversations (id, tenant, channel, account, recipient, "
                    "next_seq) VALUES (:c, 't1', 'telegram', 'bot', :c, 9)"
                ),
                {"c": conversation},
            )
        for conversation, seq, state in rows:
            message = f"m_{conversation}_{seq}"
            conn.execute(
                sa.text(
                    "INSERT INTO messages (id, tenant, conversation_id, seq, direction, "
                    "content, status, created_at) VALUES (:m, 't1', :c, :s, 'outbound', "
                    ":content, 'queued', 1.0)"
                ),
                {"m": message, "c": conversation, "s": seq, "content": '{"text": "x"}'},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO outbox (message_id, conversation_id, seq, state, attempts, "
                    "available_at, leased_by, lease_until) VALUES (:m, :c, :s, :state, 0, 1.0, "
                    ":holder, :until)"
                ),
                {
                    "m": message,
                    "c": conversation,
                    "s": seq,
                    "state": state,
                    "holder": "w:1:0" if state == "inflight" else None,
                    "until": 1e12 if state == "inflight" else None,
                },
            )
    old.dispose()

    store = await SqlStore.open(sqlite_url(path))
    try:
        async with store.engine.connect() as conn:
            heads = (
                await conn.execute(sa.text("SELECT message_id FROM outbox WHERE head ORDER BY 1"))
            ).scalars()
            assert list(heads) == ["m_c_back_2", "m_c_busy_1", "m_c_idle_4"]
        claimed = await store.claim(2.0, 10, worker="w2", lease=30.0)
        assert [i.message.id for i in claimed] == ["m_c_idle_4"]
    finally:
        await store.close()


async def test_a_sqlite_claim_walks_the_heads_not_the_backlog(tmp_path: Path) -> None:
    """On a fresh SQLite hub (no ANALYZE ever ran) the claim's statement reads the heads'
    index, not every pending row through the state's: in the writer thread, where claims
    run, and on the engine's other connections."""
    store = await SqlStore.open(sqlite_url(tmp_path / "plan.db"))
    wanted = ["SEARCH outbox USING INDEX outbox_heads (available_at<?)"]

    def plan(conn: sa.Connection) -> list[str]:
        sql = f"EXPLAIN QUERY PLAN {_HEADS.compile(dialect=conn.dialect)}"
        return [row[3] for row in conn.exec_driver_sql(sql, (1.0, 64, 0)).all()]

    try:
        assert await store.db.write(plan) == wanted
        async with store.engine.connect() as conn:
            assert await conn.run_sync(plan) == wanted
    finally:
        await store.close()
