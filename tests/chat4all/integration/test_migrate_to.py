"""`chat4all migrate --to <postgresql URL>`: an embedded hub with data moves into PostgreSQL,
as an operator does it (the command line), and the hub keeps serving it from there."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from chat4all.adapters.storage.engine import sqlite_url
from chat4all.adapters.storage.leases import expire_leases
from chat4all.adapters.storage.schema import metadata, staged_segments, staged_uploads
from chat4all.adapters.storage.sql import SqlStore
from chat4all.bootstrap import SIMULATOR_ACCOUNT
from chat4all.cli import TARGET_IN_USE
from chat4all.domain.model import Content
from chat4all.ports import SendRequest
from tests.chat4all.channels.telegram_hub import telegram_of, webhook_secret
from tests.chat4all.conftest import hub_running
from tests.chat4all.integration.test_cli import cli


def body(text: str, recipient: str) -> dict[str, Any]:
    return {
        "channel": "telegram",
        "account": SIMULATOR_ACCOUNT,
        "recipient": recipient,
        "content": {"text": text},
    }


async def until(check: Callable[[], Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def _rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of the schema, in primary key order."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                table.name: [
                    dict(r._mapping)
                    for r in await conn.execute(
                        sa.select(table).order_by(*table.primary_key.columns)
                    )
                ]
                for table in metadata.sorted_tables
            }
    finally:
        await engine.dispose()


async def _tables(url: str) -> list[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    finally:
        await engine.dispose()


def _released(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` as the copy writes it: a row in flight under the old process is pending."""
    if "leased_by" in row and row["state"] == "inflight":
        return {**row, "state": "pending", "leased_by": None, "lease_until": None}
    return row


async def _old_hub(data: Path) -> dict[str, Any]:
    """An embedded hub used for a while, then stopped, with a row in every table: messages
    sent, dead, received and pending (one of them left in flight by a worker of another host),
    an Idempotency-Key, a subscription with deliveries waiting, keys, audit entries, an upload,
    a resumable upload staged in a bucket and a tenant setting. What the test needs to know of
    it."""
    seen: dict[str, Any] = {}
    async with hub_running(data) as hub:
        assert hub.admin_key is not None
        seen["admin"] = hub.admin_key
        telegram_of(hub).blocked.add("666")
        auth = {"Authorization": f"Bearer {hub.admin_key}"}
        async with httpx.AsyncClient(base_url=hub.url, headers=auth, timeout=20) as client:
            hook = {"url": "http://127.0.0.1:9/hook", "events": ["message.status"]}
            assert (await client.post("/v1/subscriptions", json=hook)).status_code == 201
            first = await client.post(
                "/v1/messages", json=body("hello", "42"), headers={"Idempotency-Key": "order-1"}
            )
            assert first.status_code == 202
            seen["first"] = first.json()
            dead = (await client.post("/v1/messages", json=body("are you there", "666"))).json()
            upload = await client.post("/v1/media", files={"file": ("a.pdf", b"%PDF-1 bytes")})
            assert upload.status_code == 201, upload.text
            seen["media"] = upload.json()["id"]
            patched = await client.patch("/v1/settings", json={"oversize": "reject"})
            assert patched.status_code == 200, patched.text
            bad = await client.get("/v1/conversations", headers={"Authorization": "Bearer c4a_x"})
            assert bad.status_code == 401  # an audit entry
            webhook = f"{hub.url}/v1/channels/telegram/{SIMULATOR_ACCOUNT}/webhook"
            update = telegram_of(hub).update(77, "hi from a user")
            assert await telegram_of(hub).push(webhook, webhook_secret(hub), update) == 200

            async def settled() -> bool:
                sent = (await client.get(f"/v1/messages/{seen['first']['id']}")).json()
                failed = (await client.get(f"/v1/messages/{dead['id']}")).json()
                return bool(sent["status"] == "sent" and failed["status"] == "failed")

            await until(settled)
    store = await SqlStore.open(sqlite_url(data / "chat4all.db"))
    try:
        # what the old hub may have left in flight when it stopped is released as its restart
        # would, so that the one row below is the only one in flight
        for table in (metadata.tables["outbox"], metadata.tables["webhook_outbox"]):
            key = next(iter(table.primary_key.columns))
            await store.db.write(expire_leases, table, key, math.inf)
        later = SendRequest("telegram", SIMULATOR_ACCOUNT, "50", Content(text="later"))
        held = SendRequest("telegram", SIMULATOR_ACCOUNT, "51", Content(text="held"))
        seen["pending"] = (await store.accept("default", later, None, time.time())).message.id
        await store.accept("default", held, None, time.time())
        claimed = await store.claim(time.time(), 10, worker="elsewhere:1:gone", lease=3600.0)
        assert len(claimed) == 2  # both in flight under a worker of another host
        await store.retry(claimed[0], 0.0, "a provider error", time.time())  # pending, due
        # an unfinished resumable upload as a hub with its media in S3 stages it (its chunks
        # are objects of the bucket, which stays): its rows go with the rest
        upload = "up_" + "0f" * 16
        async with store.transaction() as conn:
            await conn.execute(
                staged_uploads.insert().values(
                    id=upload,
                    tenant="default",
                    size=10,
                    filename="big.bin",
                    mime_type="application/octet-stream",
                    kind=None,
                    sha256=None,
                    created_at=time.time(),
                    kept=4,
                    written_at=time.time(),
                )
            )
            await conn.execute(
                staged_segments.insert().values(
                    upload_id=upload, start=0, size=4, name=f"{0:020d}.0123456789abcdef"
                )
            )
    finally:
        await store.close()
    return seen


async def test_a_hub_moves_to_postgresql_and_keeps_serving(
    tmp_path: Path, postgres_url: str
) -> None:
    old = tmp_path / "old"
    seen = await _old_hub(old)
    before = await _rows(sqlite_url(old / "chat4all.db"))
    runtime = {t.name for t in metadata.tables.values() if t.info.get("runtime")}
    assert runtime == {"partition_leases", "partition_workers"}  # not data: not copied
    empty = [table for table, rows in before.items() if not rows and table not in runtime]
    assert not empty, f"the test hub has no row in {empty}: add some, so their copy is tested"
    assert any(r["state"] == "inflight" for r in before["outbox"])

    password = "pw-n0t-shown-9f3a"
    target = postgres_url.replace("postgres@", f"postgres:{password}@")  # trust: any password
    moved = await asyncio.to_thread(cli, old, "migrate", "--to", target)
    assert moved.returncode == 0, moved.stderr
    assert password not in moved.stderr
    assert "messages: 5 rows" in moved.stderr.replace("\n", " ")
    assert "media files were not copied" in moved.stderr
    assert "1 in-flight deliveries (messages, webhooks) are pending again" in moved.stderr

    after = await _rows(postgres_url)
    for table, rows in before.items():
        assert after[table] == [_released(table, r) for r in rows], table

    again = await asyncio.to_thread(cli, old, "migrate", "--to", target)
    assert again.returncode == TARGET_IN_USE
    assert "not empty" in again.stderr
    assert "messages" in again.stderr
    assert password not in again.stderr
    assert await _rows(postgres_url) == after  # nothing merged

    verified = await asyncio.to_thread(
        cli, tmp_path, "audit", "verify", CHAT4ALL_DATABASE_URL=postgres_url
    )
    assert verified.returncode == 0, verified.stderr
    assert f"intact: {len(before['audit_log'])} entries" in verified.stderr

    async with hub_running(
        tmp_path / "new", DATABASE_URL=postgres_url, MEDIA_DIR=old / "media"
    ) as hub:
        assert hub.admin_key is None  # the old keys came along: no new first key
        auth = {"Authorization": f"Bearer {seen['admin']}"}
        async with httpx.AsyncClient(base_url=hub.url, headers=auth, timeout=20) as client:
            replay = await client.post(
                "/v1/messages", json=body("hello", "42"), headers={"Idempotency-Key": "order-1"}
            )
            assert replay.status_code == 202
            assert replay.json() == seen["first"]
            media = await client.get(f"/v1/media/{seen['media']}")
            assert media.status_code == 200
            assert media.content == b"%PDF-1 bytes"

            async def delivered() -> bool:
                return sorted(telegram_of(hub).texts()) == ["held", "later"]

            await until(delivered)
            fresh = await client.post("/v1/messages", json=body("new here", "42"))
            assert fresh.status_code == 202, fresh.text
            assert fresh.json()["id"] not in {r["id"] for r in before["messages"]}

            async def fresh_sent() -> bool:
                got = (await client.get(f"/v1/messages/{fresh.json()['id']}")).json()
                return bool(got["status"] == "sent")

            await until(fresh_sent)
            bad = await client.get("/v1/conversations", headers={"Authorization": "Bearer c4a_y"})
            assert bad.status_code == 401  # a new audit entry, chained to the copied ones
    now = await _rows(postgres_url)
    for table in ("status_events", "webhook_outbox", "audit_log"):  # ids from the sequences
        old_ids = {r["id"] for r in before[table]}
        assert [r["id"] for r in now[table] if r["id"] not in old_ids], table
    verified = await asyncio.to_thread(
        cli, tmp_path, "audit", "verify", CHAT4ALL_DATABASE_URL=postgres_url
    )
    assert verified.returncode == 0, verified.stderr


async def test_a_running_hub_a_missing_one_or_a_bad_url_is_refused(
    tmp_path: Path, postgres_url: str
) -> None:
    nothing = await asyncio.to_thread(cli, tmp_path / "nowhere", "migrate", "--to", postgres_url)
    assert nothing.returncode == 3, nothing.stderr
    assert "no hub database at" in nothing.stderr
    async with hub_running(tmp_path):  # running, idle
        running = await asyncio.to_thread(cli, tmp_path, "migrate", "--to", postgres_url)
    assert running.returncode == TARGET_IN_USE, running.stderr
    assert "stop the hub first" in running.stderr
    assert await _tables(postgres_url) == []  # refused before anything was written
    stopped = await asyncio.to_thread(cli, tmp_path, "migrate", "--to", postgres_url)
    assert stopped.returncode == 0, stopped.stderr

    for url, code, says in (
        ("not a url", 2, "not a database URL"),
        ("mysql://u:s3cr3t-pw@127.0.0.1/hub", 2, "into PostgreSQL"),
        ("postgresql://u:s3cr3t-pw@127.0.0.1:5432", 2, "names no database"),
        ("postgresql://u:s3cr3t-pw@127.0.0.1:1/hub", 3, "cannot open or migrate"),
    ):
        refused = await asyncio.to_thread(cli, tmp_path, "migrate", "--to", url)
        assert refused.returncode == code, refused.stderr
        assert says in refused.stderr.replace("\n", " ")
        assert "s3cr3t-pw" not in refused.stderr
        assert "Traceback" not in refused.stderr
