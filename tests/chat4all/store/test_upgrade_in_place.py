"""A database made by the release before leases (schema 0005), with messages pending, in flight
and dead, idempotency keys and webhook deliveries, upgrades in place: everything is still there
and everything undelivered is dispatched. Over SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from chat4all.adapters.storage import migrate
from chat4all.adapters.storage.sql import SqlStore
from chat4all.adapters.storage.tenants import SqlTenantSettings
from chat4all.adapters.storage.webhooks import WebhookStore
from chat4all.domain.model import Content, DeliveryStatus, Oversize, content_document
from chat4all.ports import SendRequest

PREVIOUS = "0005"


def _old_release(conn: sa.Connection) -> None:
    command.upgrade(migrate.alembic_config(conn), PREVIOUS)
    content = json.dumps(content_document(Content(text="x")), separators=(",", ":"))
    conn.execute(
        sa.text(
            "INSERT INTO conversations (id, tenant, channel, account, recipient, next_seq, "
            "last_message_at) VALUES ('c1', 't1', 'telegram', 'bot', '42', 4, 1.0), "
            "('c2', 't1', 'telegram', 'bot', '43', 2, 1.0)"
        )
    )
    for mid, conv, seq, status in (
        ("m_inflight", "c1", 1, "queued"),
        ("m_pending", "c1", 2, "queued"),
        ("m_dead", "c1", 3, "failed"),
        ("m_other", "c2", 1, "queued"),
    ):
        conn.execute(
            sa.text(
                "INSERT INTO messages (id, tenant, conversation_id, seq, direction, content, "
                "status, created_at) VALUES (:id, 't1', :c, :s, 'outbound', :content, :st, 1.0)"
            ),
            {"id": mid, "c": conv, "s": seq, "content": content, "st": status},
        )
        conn.execute(
            sa.text(
                "INSERT INTO status_events (message_id, status, at) VALUES (:id, 'accepted', 1.0)"
            ),
            {"id": mid},
        )
    for mid, conv, seq, state in (
        ("m_inflight", "c1", 1, "inflight"),  # held by the old release's process at shutdown
        ("m_pending", "c1", 2, "pending"),
        ("m_dead", "c1", 3, "dead"),
        ("m_other", "c2", 1, "pending"),
    ):
        conn.execute(
            sa.text(
                "INSERT INTO outbox (message_id, conversation_id, seq, state, attempts, "
                "available_at, last_error) VALUES (:id, :c, :s, :st, 0, 1.0, :e)"
            ),
            {"id": mid, "c": conv, "s": seq, "st": state, "e": "gone" if state == "dead" else None},
        )
    conn.execute(
        sa.text(
            "INSERT INTO idempotency (tenant, key, body_hash, message_id, lease_until, "
            "created_at) VALUES ('t1', 'k1', 'h1', 'm_other', 1.0, 1.0)"
        )
    )
    conn.execute(
        sa.text(
            "INSERT INTO subscriptions (id, tenant, url, secret, events, created_at) VALUES "
            "('s1', 't1', 'http://127.0.0.1:9/hook', 'whsec_x', 'message.status', 1.0)"
        )
    )
    for state in ("pending", "inflight"):
        conn.execute(
            sa.text(
                "INSERT INTO webhook_outbox (subscription_id, event, payload, state, attempts, "
                "available_at, first_at) VALUES ('s1', 'message.status', '{}', :st, 0, 1.0, 1.0)"
            ),
            {"st": state},
        )


async def test_a_database_of_the_previous_release_upgrades_with_its_data(store_url: str) -> None:
    engine = create_async_engine(store_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_old_release)
    finally:
        await engine.dispose()

    store = await SqlStore.open(store_url)
    try:
        assert store.migrated == (PREVIOUS, migrate.revisions()[-1])
        for mid in ("m_inflight", "m_pending", "m_dead", "m_other"):
            assert (await store.get("t1", mid)).content.text == "x"
        dead = await store.dead_letters("t1", None, 10)
        assert [(m.id, reason) for m, reason in dead.items] == [("m_dead", "gone")]
        # the old in-flight row has no lease: it is handed out again, first of its conversation
        claimed = await store.claim(2.0, 10, worker="new", lease=30.0)
        assert sorted(i.message.id for i in claimed) == ["m_inflight", "m_other"]
        assert next(i for i in claimed if i.message.id == "m_inflight").reclaimed
        for item in claimed:
            await store.sent(item, f"p-{item.message.id}", 3.0)
        [last] = await store.claim(4.0, 10, worker="new", lease=30.0)
        assert last.message.id == "m_pending"
        await store.sent(last, "p-last", 5.0)
        assert (await store.depth(), await store.dead_count()) == (0, 1)
        await store.replay("t1", "m_dead", 6.0)
        [replayed] = await store.claim(6.0, 10, worker="new", lease=30.0)
        assert replayed.message.id == "m_dead"
        # a key completed by the old release still replays (its message, as it is now)
        request = SendRequest("telegram", "bot", "43", Content(text="x"))
        again = await store.accept("t1", request, ("k1", "h1"), 7.0)
        assert again.replayed
        assert again.message.id == "m_other"
        assert again.message.status is DeliveryStatus.SENT
        deliveries = await WebhookStore(store).claim(8.0, 10, worker="new", lease=30.0)
        assert len(deliveries) == 2  # the pending one and the one the old release held
    finally:
        await store.close()


async def test_processes_starting_together_on_an_empty_database_both_migrate(
    postgres_url: str, tmp_path: Path
) -> None:
    """Replicas rolled out at once: they take turns migrating (an advisory lock), so neither
    fails on the other's half-made schema."""
    chat4all = Path(sys.executable).with_name("chat4all")
    env = {**os.environ, "CHAT4ALL_DATABASE_URL": postgres_url}
    starts = [
        await asyncio.create_subprocess_exec(
            str(chat4all),
            "migrate",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    outputs = [(await p.communicate())[0].decode() for p in starts]
    assert [p.returncode for p in starts] == [0, 0, 0], outputs
    assert sum("migrated from empty" in o for o in outputs) == 1, outputs


def _before_channels(conn: sa.Connection) -> None:
    """The release before the Meta channels' kinds (schema 0006): a message sent, one still
    queued, one received; content documents of that release."""
    command.upgrade(migrate.alembic_config(conn), "0006")
    _before_channels_data(conn)


def _before_channels_data(conn: sa.Connection) -> None:
    content = json.dumps(content_document(Content(text="old")), separators=(",", ":"))
    conn.execute(
        sa.text(
            "INSERT INTO conversations (id, tenant, channel, account, recipient, next_seq, "
            "last_message_at) VALUES ('c1', 't1', 'telegram', 'bot', '42', 4, 1.0)"
        )
    )
    for mid, seq, direction, status, provider in (
        ("m_sent", 1, "outbound", "sent", "p-1"),
        ("m_queued", 2, "outbound", "queued", None),
        ("m_in", 3, "inbound", "delivered", "p-in"),
    ):
        conn.execute(
            sa.text(
                "INSERT INTO messages (id, tenant, conversation_id, seq, direction, content, "
                "status, created_at, provider_message_id) VALUES (:id, 't1', 'c1', :s, :d, "
                ":content, :st, 1.0, :p)"
            ),
            {"id": mid, "s": seq, "d": direction, "content": content, "st": status, "p": provider},
        )
    conn.execute(
        sa.text(
            "INSERT INTO status_events (message_id, status, at) VALUES ('m_sent', 'accepted', "
            "1.0), ('m_sent', 'sent', 2.0), ('m_queued', 'accepted', 1.0)"
        )
    )


async def test_a_database_made_before_the_new_kinds_upgrades_and_takes_watermarks(
    store_url: str,
) -> None:
    """Its messages read as they were (no new kind in them), and a watermark receipt after the
    upgrade covers the message that release sent (its ``sent`` time was carried over)."""
    engine = create_async_engine(store_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_before_channels)
    finally:
        await engine.dispose()
    store = await SqlStore.open(store_url)
    try:
        assert store.migrated == ("0006", migrate.revisions()[-1])
        for mid in ("m_sent", "m_queued", "m_in"):
            assert (await store.get("t1", mid)).content == Content(text="old")
        changed, outcome = await store.apply_receipt(
            "telegram", "bot", DeliveryStatus.READ, 3.0, recipient="42", watermark=2.5
        )
        assert ([m.id for m in changed], outcome) == (["m_sent"], "applied")
        assert (await store.get("t1", "m_queued")).status is DeliveryStatus.QUEUED
    finally:
        await store.close()


def _before_tenant_settings(conn: sa.Connection) -> None:
    """The release before tenant settings (schema 0007): a queued message and an upload."""
    command.upgrade(migrate.alembic_config(conn), "0007")
    _before_channels_data(conn)
    conn.execute(
        sa.text(
            "INSERT INTO media (id, tenant, sha256, size, filename, mime_type, kind, created_at) "
            "VALUES ('md_old', 't1', :sha, 20000000, 'v.mp4', 'video/mp4', 'video', 1.0)"
        ),
        {"sha": "0" * 64},
    )


async def test_a_database_made_before_tenant_settings_upgrades_and_keeps_the_default(
    store_url: str,
) -> None:
    """Its data reads as it was; its tenants have the default policy (reject) until an admin
    changes it, and the change is kept."""
    engine = create_async_engine(store_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_before_tenant_settings)
    finally:
        await engine.dispose()
    store = await SqlStore.open(store_url)
    try:
        assert store.migrated == ("0007", migrate.revisions()[-1])
        assert (await store.get("t1", "m_queued")).content == Content(text="old")
        settings = SqlTenantSettings(store)
        assert await settings.oversize("t1") is None
        await settings.set_oversize("t1", Oversize.LINK, 2.0)
        await settings.set_oversize("t1", Oversize.REJECT, 3.0)  # an update, not a second row
        await settings.set_oversize("t2", Oversize.LINK, 3.0)
        assert (await settings.oversize("t1"), await settings.oversize("t2")) == (
            Oversize.REJECT,
            Oversize.LINK,
        )
        async with store.engine.connect() as conn:
            kept = (await conn.execute(sa.text("SELECT size FROM media WHERE id = 'md_old'"))).one()
        assert kept.size == 20000000
    finally:
        await store.close()
