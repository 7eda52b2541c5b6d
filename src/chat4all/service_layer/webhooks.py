"""Client webhooks: deliver queued events, signed, retried for up to 24 hours.

Each call is a POST of the event's JSON with:

- ``X-Chat4All-Event``: the event type; ``X-Chat4All-Delivery``: its delivery id (a retry keeps
  the id, so receivers can deduplicate);
- ``X-Chat4All-Timestamp``: Unix seconds of this attempt;
- ``X-Chat4All-Signature``: ``v1=`` + hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under the
  subscription's secret. Receivers check it with :func:`verify` and reject stale timestamps.

A 2xx answer delivers; anything else (another status, no answer in ``timeout``, a URL that does
not parse or resolve, a host refused by the :class:`~chat4all.service_layer.targets.TargetPolicy`,
any error at all) is that delivery's failure: it retries after an exponential backoff with
jitter (10 s, 20 s, 40 s ... capped at 1 h) until 24 h after the event, then the delivery is
dead-lettered (counted in ``chat4all_webhook_dead_letters``). No delivery can end the worker.

Claiming, leases, polling and the handling of a failed round are the loop every outbox worker
shares (:class:`~chat4all.service_layer.outbox_worker.OutboxWorker`); a delivery whose outcome
cannot be recorded is let go and, once its lease ran out, claimed and sent again (receivers
deduplicate by ``X-Chat4All-Delivery``).
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
from chat4all.service_layer.outbox_worker import OutboxWorker, worker_id
from chat4all.service_layer.targets import TargetPolicy, UnsafeTarget
from opskit.lifecycle import jittered_backoff

__all__ = ["WebhookDispatcher", "WebhookQueue", "sign", "verify", "GIVE_UP_AFTER"]

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
    targets: TargetPolicy = field(default_factory=TargetPolicy)
    _client: httpx.AsyncClient | None = None
    _loop: OutboxWorker[Delivery] = field(init=False)

    def __post_init__(self) -> None:
        self._loop = OutboxWorker(
            "webhooks",
            self.queue,
            self._deliver,
            key=_delivery_id,
            batch=_BATCH,
            lease=self.lease,
            poll_interval=self.poll_interval,
            clock=self.clock,
            worker=self.worker,
        )

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
            self._client = client
            await self._loop.run(stop)

    async def round(self, client: httpx.AsyncClient) -> int:
        """Claim and deliver one batch through ``client``; returns how many were claimed."""
        self._client = client
        return await self._loop.round()

    async def _deliver(self, delivery: Delivery) -> bool:
        """One attempt and its outcome recorded (a store error raises: the loop lets it go)."""
        assert self._client is not None, "run() or round() provides the client"
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
            target = await self.targets.checked(delivery.url)
            answer = await self._client.post(
                target.connect_url,
                content=body,
                headers={**headers, **target.headers},
                extensions=target.extensions,
            )
            error = None if 200 <= answer.status_code < 300 else f"HTTP {answer.status_code}"
        except UnsafeTarget as exc:
            error = f"refused: {exc}"
        except Exception as exc:  # whatever it is, it is this delivery's failure, not the worker's
            error = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, httpx.HTTPError):
                log.warning(
                    "webhook %s for subscription %s failed unexpectedly: %s",
                    delivery.id,
                    delivery.subscription_id,
                    error,
                )
        if error is None:
            await self.queue.delivered(delivery)
            return True
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
            return True
        wait = jittered_backoff(delivery.attempts, self.base_backoff, self.max_backoff, self.rng)
        await self.queue.retry(delivery, now + wait, error)
        return True


def _delivery_id(delivery: Delivery) -> int:
    return delivery.id
