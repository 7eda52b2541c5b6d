"""The store's hot calls are timed into the hub's ``chat4all_store_seconds`` histogram."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import Content
from chat4all.metrics import HubMetrics
from chat4all.ports import SendRequest


def _count(metrics: HubMetrics, operation: str) -> float:
    value = metrics.registry.get_sample_value(
        "chat4all_store_seconds_count", {"operation": operation}
    )
    return value or 0.0


async def test_accept_claim_and_record_are_each_timed_once(store: SqlStore) -> None:
    metrics = HubMetrics(CollectorRegistry())
    store.observe = metrics.stored

    await store.accept("t1", SendRequest("telegram", "bot", "42", Content(text="hi")), None, 1.0)
    assert [_count(metrics, op) for op in ("accept", "claim", "record")] == [1, 0, 0]
    (item,) = await store.claim(2.0, 10, worker="w", lease=30.0)
    await store.sent(item, "p-1", 3.0)

    assert [_count(metrics, op) for op in ("accept", "claim", "record")] == [1, 1, 1]
    total = metrics.registry.get_sample_value("chat4all_store_seconds_sum", {"operation": "accept"})
    assert total is not None and total > 0


async def test_a_replayed_accept_is_timed_too(store: SqlStore) -> None:
    metrics = HubMetrics(CollectorRegistry())
    store.observe = metrics.stored
    request = SendRequest("telegram", "bot", "42", Content(text="hi"))

    first = await store.accept("t1", request, ("k1", "hash"), 1.0)
    again = await store.accept("t1", request, ("k1", "hash"), 2.0)

    assert again.replayed and again.message.id == first.message.id
    assert _count(metrics, "accept") == 2
