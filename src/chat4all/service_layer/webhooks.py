"""Client webhooks: deliver queued events, signed, retried for up to 24 hours.

Each call is a POST of the event's JSON with:

- ``X-Chat4All-Event``: the event type; ``X-Chat4All-Delivery``: its delivery id (a retry keeps
  the id, so receivers can deduplicate);
- ``X-Chat4All-Timestamp``: Unix seconds of this attempt;
- ``X-Chat4All-Signature``: ``v1=`` + hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under the
  subscription's secret. Receivers check it with :func:`verify` and reject stale timestamps.

A 2xx answer delivers; anything else (or no answer in ``timeout``) retries after an exponential
backoff with jitter (10 s, 20 s, 40 s ... capped at 1 h) until 24 h after the event, then the
delivery is dead-lettered (counted in ``chat4all_webhook_dead_letters``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import httpx

from chat4all.adapters.storage.webhooks import Delivery
from chat4all.service_layer.dispatcher import worker_id
from opskit.lifecycle import jittered_backoff, sleep_or_stop

__all__ = ["WebhookDispatcher", "sign", "verify", "GIVE_UP_AFTER"]

log = logging.getLogger(__name__)

GIVE_UP_AFTER: Final = 24 * 3600.0
_BATCH: Final = 32


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, now: float, tolerance: float = 300
) -> bool:
    """What a receiver does: a valid signature over a timestamp within ``tolerance`` seconds."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


class WebhookQueue(Protocol):
    """As :class:`~chat4all.ports.Outbox`: claims with leases, renewed while delivering."""

    async def recover(self, now: float) -> int: ...

    async def claim(
        self, now: float, limit: int, *, worker: str, lease: float
    ) -> list[Delivery]: ...

    async def renew(self, deliveries: Sequence[Delivery], *, worker: str, until: float) -> None: ...

    async def delivered(self, delivery: Delivery) -> None: ...

    async def retry(self, delivery: Delivery, at: float, error: str) -> None: ...

    async def dead(self, delivery: Delivery, error: str) -> None: ...


@dataclass
class WebhookDispatcher:
    queue: WebhookQueue
    timeout: float = 10.0
    base_backoff: float = 10.0
    max_backoff: float = 3600.0
    poll_interval: float = 0.5
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    transport: httpx.AsyncBaseTransport | None = None
    lease: float = 60.0
    """Seconds a claimed delivery stays this worker's without renewal (renewed every third)."""
    worker: str = field(default_factory=worker_id)

    async def run(self, stop: asyncio.Event) -> None:
        await self.queue.recover(self.clock())
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
            while not stop.is_set():
                if await self.round(client):
                    continue
                await sleep_or_stop(stop, self.poll_interval)

    async def round(self, client: httpx.AsyncClient) -> int:
        batch = await self.queue.claim(self.clock(), _BATCH, worker=self.worker, lease=self.lease)
        if batch:
            renewing = asyncio.create_task(self._renew_often(batch))
            try:
                await asyncio.gather(*(self._deliver(client, d) for d in batch))
            finally:
                renewing.cancel()
                await asyncio.gather(renewing, return_exceptions=True)
        return len(batch)

    async def _renew_often(self, batch: list[Delivery]) -> None:
        """Every third of a lease, while ``batch`` is being delivered, extend its leases."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.queue.renew(batch, worker=self.worker, until=self.clock() + self.lease)
            except Exception as exc:  # next time; a lease outlives two misses
                log.warning("could not renew webhook leases: %s: %s", type(exc).__name__, exc)

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        body = delivery.payload.encode()
        stamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "chat4all-webhooks/1",
            "X-Chat4All-Event": delivery.event,
            "X-Chat4All-Delivery": str(delivery.id),
            "X-Chat4All-Timestamp": str(stamp),
            "X-Chat4All-Signature": sign(delivery.secret, stamp, body),
        }
        try:
            answer = await client.post(delivery.url, content=body, headers=headers)
            error = None if 200 <= answer.status_code < 300 else f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            await self.queue.delivered(delivery)
            return
        now = self.clock()
        if now - delivery.first_at >= GIVE_UP_AFTER:
            log.warning(
                "webhook %s for subscription %s dead-lettered after %d attempts over 24 h: %s",
                delivery.id,
                delivery.subscription_id,
                delivery.attempts + 1,
                error,
            )
            await self.queue.dead(delivery, error)
            return
        wait = jittered_backoff(delivery.attempts, self.base_backoff, self.max_backoff, self.rng)
        await self.queue.retry(delivery, now + wait, error)
