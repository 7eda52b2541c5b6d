"""Workers share a log's partitions through leases in PostgreSQL: every partition has one
holder at a time, each worker gets its fair share, a worker that stops gives its partitions
back at once and a dead one's are taken once its lease ran out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from chat4all.adapters.storage.partitions import SqlPartitionLeases
from chat4all.adapters.storage.sql import SqlStore
from chat4all.service_layer.log_dispatch import PartitionOwner

P = 16
LEASE = 10.0


@pytest.fixture
async def leases(postgres_url: str) -> AsyncIterator[SqlPartitionLeases]:
    store = await SqlStore.open(postgres_url)
    try:
        yield SqlPartitionLeases(store.db, "test-log")
    finally:
        await store.close()


async def settle(leases: SqlPartitionLeases, workers: list[str], now: float) -> dict[str, set[int]]:
    """Two rounds of rebalances (a joiner is counted in the first, served in the second)."""
    held: dict[str, set[int]] = {}
    for _ in range(2):
        for w in workers:
            held[w] = set(await leases.rebalance(w, now, LEASE, P))
    return held


def disjoint_cover(held: dict[str, set[int]]) -> bool:
    every = [p for ps in held.values() for p in ps]
    return sorted(every) == list(range(P))


async def test_workers_share_the_partitions_fairly_and_never_hold_one_twice(
    leases: SqlPartitionLeases,
) -> None:
    assert await leases.rebalance("a", 100.0, LEASE, P) == list(range(P))
    held = await settle(leases, ["a", "b"], 101.0)
    assert {w: len(ps) for w, ps in held.items()} == {"a": 8, "b": 8}
    assert disjoint_cover(held)
    held = await settle(leases, ["a", "b", "c"], 102.0)
    assert max(len(ps) for ps in held.values()) == 6  # ceil(16 / 3): nobody holds more
    assert disjoint_cover(held)
    holders = await leases.holders()
    assert all(holders[p] in held and p in held[str(holders[p])] for p in range(P))


async def test_a_dead_workers_partitions_are_taken_once_its_lease_ran_out(
    leases: SqlPartitionLeases,
) -> None:
    held = await settle(leases, ["a", "b"], 100.0)
    assert len(held["b"]) == 8
    # b dies (stops renewing): not before its lease ran out ...
    assert set(await leases.rebalance("a", 105.0, LEASE, P)) == held["a"]
    # ... then a takes everything
    assert await leases.rebalance("a", 100.0 + LEASE + 1, LEASE, P) == list(range(P))


async def test_a_worker_that_stops_gives_its_partitions_back_at_once(
    leases: SqlPartitionLeases,
) -> None:
    await settle(leases, ["a", "b"], 100.0)
    await leases.release("b")
    assert await leases.rebalance("a", 101.0, LEASE, P) == list(range(P))


async def test_concurrent_owners_converge_to_a_disjoint_fair_split(
    leases: SqlPartitionLeases,
) -> None:
    owners = [PartitionOwner(leases, P, lease=LEASE, worker=f"w{n}") for n in range(4)]
    for _ in range(3):
        await asyncio.gather(*(o.rebalance() for o in owners))
    now = time.time()
    held = {o.worker: set(o.owned(now)) for o in owners}
    assert [len(ps) for ps in held.values()] == [4, 4, 4, 4]
    assert disjoint_cover(held)
