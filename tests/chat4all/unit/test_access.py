"""Rate limits (token buckets on a fake clock) and the hash-chained audit log."""

from __future__ import annotations

import pytest

from chat4all.adapters.storage.audit import AuditLog, audit_log
from chat4all.adapters.storage.keys import KeyRing
from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.access import Role
from chat4all.errors import AuthError, PermissionDenied, RateLimited
from chat4all.service_layer.access import Access, LocalRateLimiter, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=1.0, capacity=3, tokens=3, updated=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(1.0)
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert bucket.take(1.0) == 0.0


async def test_per_key_limits_are_independent_and_say_when_to_retry(store: SqlStore) -> None:
    keys = KeyRing(store)
    a, _ = await keys.create("t1", Role.SENDER)
    b, _ = await keys.create("t1", Role.SENDER)
    clock = Clock()
    access = Access(
        keys, limiter=LocalRateLimiter(per_key=60, clock=clock)
    )  # one a second, bursts of 60
    for _ in range(60):
        await access.authorize(a, "send")
    with pytest.raises(RateLimited) as limited:
        await access.authorize(a, "send")
    assert limited.value.retry_after == pytest.approx(1.0)
    await access.authorize(b, "send")  # another key is not affected
    clock.now += 1.0
    await access.authorize(a, "send")


async def test_the_global_limit_covers_all_keys(store: SqlStore) -> None:
    keys = KeyRing(store)
    a, _ = await keys.create("t1", Role.SENDER)
    b, _ = await keys.create("t2", Role.SENDER)
    access = Access(keys, limiter=LocalRateLimiter(per_key=0, global_=2, clock=Clock()))
    await access.authorize(a, "send")
    await access.authorize(b, "send")
    with pytest.raises(RateLimited, match="global"):
        await access.authorize(a, "send")


async def test_the_tenant_limit_covers_the_keys_of_the_principals_tenant(
    store: SqlStore,
) -> None:
    keys = KeyRing(store)
    a, _ = await keys.create("t1", Role.SENDER)
    b, _ = await keys.create("t1", Role.SENDER)
    other, _ = await keys.create("t2", Role.SENDER)
    access = Access(keys, limiter=LocalRateLimiter(per_key=0, per_tenant=2, clock=Clock()))
    await access.authorize(a, "send")
    await access.authorize(b, "send")
    with pytest.raises(RateLimited, match="for this tenant"):
        await access.authorize(a, "send")
    await access.authorize(other, "send")


async def test_failures_are_audited_and_the_chain_verifies(store: SqlStore) -> None:
    keys, audit = KeyRing(store), AuditLog(store)
    reader, info = await keys.create("t1", Role.READER)
    access = Access(keys, audit, limiter=LocalRateLimiter(clock=Clock()))
    with pytest.raises(AuthError):
        await access.authorize("c4a_nope_wrong", "read")
    with pytest.raises(PermissionDenied):
        await access.authorize(reader, "send")
    entries = await audit.entries()
    assert [e.event for e in entries] == ["permission_denied", "auth_failed"]
    assert entries[0].actor == info.id
    assert "nope" not in "".join(e.detail for e in entries)  # the presented key is not logged
    assert await audit.verify() == (2, None)


async def test_a_tampered_entry_breaks_the_chain_at_that_entry(store: SqlStore) -> None:
    audit = AuditLog(store)
    for n in range(4):
        await audit.append("key_created", "t1", f"k{n}", "sender")
    async with store.engine.begin() as conn:
        await conn.execute(audit_log.update().where(audit_log.c.id == 3).values(detail="admin"))
    assert await audit.verify() == (2, 3)
    async with store.engine.begin() as conn:
        await conn.execute(audit_log.update().where(audit_log.c.id == 3).values(detail="sender"))
        await conn.execute(audit_log.delete().where(audit_log.c.id == 2))
    assert await audit.verify() == (1, 3)
