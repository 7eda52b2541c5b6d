"""The dispatcher: outbox → connector, one message in flight per conversation.

Each round claims the due heads of idle conversations (the store guarantees per-conversation
FIFO), sends them concurrently, and records each outcome:

- success: ``sent`` with the provider's id;
- :class:`~chat4all.errors.RetryableDelivery`: back to pending after an exponential backoff
  with full jitter (1 s, 2 s, 4 s ... capped), or after the provider's ``retry_after`` when it
  gave one; after ``max_attempts`` the message is dead-lettered and ``failed``;
- :class:`~chat4all.errors.PermanentDelivery`: ``failed`` and dead-lettered at once.

A circuit breaker per channel account opens after ``breaker_threshold`` retryable failures in a
row: for ``breaker_cooldown`` seconds that account's messages wait without calling the provider,
then one probe decides.

Several dispatchers (in one process or many) share one outbox: each claims under a worker id
of its own (``host:pid:random``) with a lease of ``DispatchPolicy.lease`` seconds, renewed every
third of it while its items are being delivered. A crash between the provider call and ``sent``
leaves the row in flight until its lease runs out; then any dispatcher takes it again (at start
``recover``, or in any claim) and counts it: the only case of a duplicate send.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from opentelemetry.trace import Span, SpanKind, Tracer

from chat4all.errors import PermanentDelivery, RetryableDelivery
from chat4all.ports import Connector, Outbox, OutboxItem
from chat4all.telemetry import NO_TRACER, continued, failed
from opskit.lifecycle import jittered_backoff, sleep_or_stop

__all__ = ["Dispatcher", "DispatchPolicy", "DispatchEvents", "NullDispatchEvents", "worker_id"]

log = logging.getLogger(__name__)

_BATCH: Final = 64


def worker_id() -> str:
    """``host:pid:random``: who holds a lease (unique even for two workers of one process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    max_attempts: int = 8
    base_backoff: float = 1.0
    max_backoff: float = 300.0
    breaker_threshold: int = 5
    breaker_cooldown: float = 30.0
    poll_interval: float = 0.5
    """How often the outbox is polled when nothing woke the dispatcher (retries come due)."""
    record_tries: int = 5
    record_backoff: float = 0.2
    """Recording an attempt's outcome is retried (0.2 s, 0.4 s ...): a provider's answer must
    not be lost to a passing database error, or the message is sent again at the next start."""
    lease: float = 30.0
    """Seconds a claimed message stays this worker's without renewal (renewed every third of
    it while it is delivered); a worker dead that long has its messages taken by another."""


class DispatchEvents(Protocol):
    def dispatched(self, channel: str, outcome: str, seconds: float) -> None: ...

    def recovered(self, count: int) -> None: ...

    def breaker(self, account: str, open_: bool) -> None: ...

    def unrecorded(self, count: int) -> None:
        """Outcomes delivered but not yet recorded (their conversations wait)."""
        ...


class NullDispatchEvents:
    def dispatched(self, channel: str, outcome: str, seconds: float) -> None:
        pass

    def recovered(self, count: int) -> None:
        pass

    def breaker(self, account: str, open_: bool) -> None:
        pass

    def unrecorded(self, count: int) -> None:
        pass


_Unrecorded = tuple[str, OutboxItem, Callable[..., Awaitable[None]], tuple[object, ...]]
"""``(what, item, store write, its arguments)``."""


@dataclass
class _Breaker:
    failures: int = 0
    open_until: float = 0.0


@dataclass
class Dispatcher:
    outbox: Outbox
    connectors: Mapping[str, Connector]
    policy: DispatchPolicy = field(default_factory=DispatchPolicy)
    events: DispatchEvents = field(default_factory=NullDispatchEvents)
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    on_status: Callable[[OutboxItem, str, str | None], None] | None = None
    """Called after a status change committed: ``(item, "sent" | "failed", detail)``."""
    tracer: Tracer = NO_TRACER
    worker: str = field(default_factory=worker_id)
    """Whose leases this dispatcher's claims are."""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _held: dict[str, OutboxItem] = field(default_factory=dict)
    """Claimed and not yet recorded: their leases are renewed."""
    _breakers: dict[tuple[str, str], _Breaker] = field(default_factory=dict)
    _unrecorded: list[_Unrecorded] = field(default_factory=list)
    """Outcomes the store refused even after ``record_tries``: tried again every round (their
    rows stay in flight, holding their conversations, until they are recorded)."""

    def wake(self) -> None:
        """A new message is in the outbox: dispatch without waiting for the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        recovered = await self.outbox.recover(self.clock())
        self._recovered(recovered)
        renewing = asyncio.create_task(self._renew_often(stop), name="dispatcher-leases")
        try:
            await self._loop(stop)
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)

    def _recovered(self, count: int) -> None:
        if count:
            log.warning(
                "%d message(s) were in flight when the previous run stopped (their worker's lease "
                "expired); sending them again (a provider may see each twice)",
                count,
            )
        self.events.recovered(count)

    async def _renew_often(self, stop: asyncio.Event) -> None:
        """Every third of a lease, extend the leases of what this worker still holds."""
        every = self.policy.lease / 3
        while not await sleep_or_stop(stop, every):
            held = list(self._held.values())
            if not held:
                continue
            try:
                await self.outbox.renew(
                    held, worker=self.worker, until=self.clock() + self.policy.lease
                )
            except Exception as exc:  # next time; a lease outlives two misses
                log.warning(
                    "could not renew %d lease(s): %s: %s", len(held), type(exc).__name__, exc
                )

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                busy = await self.round()
            except Exception as exc:  # the database away for a moment must not end dispatching
                log.error("dispatch round failed, next try in 1 s: %s: %s", type(exc).__name__, exc)
                await sleep_or_stop(stop, 1.0)
                continue
            if busy:
                continue
            self._wake.clear()
            await _first(stop.wait(), self._wake.wait(), timeout=self.policy.poll_interval)

    async def round(self) -> int:
        """Claim and send one batch; returns how many were claimed."""
        await self._record_again()
        items = await self.outbox.claim(
            self.clock(), _BATCH, worker=self.worker, lease=self.policy.lease
        )
        self._held.update((item.message.id, item) for item in items)
        reclaimed = sum(item.reclaimed for item in items)
        if reclaimed:
            self._recovered(reclaimed)
        if items:
            await asyncio.gather(*(self._deliver(item) for item in items))
        return len(items)

    async def _deliver(self, item: OutboxItem) -> None:
        """One attempt, in a span that continues the trace of the request that accepted it."""
        with continued(
            self.tracer,
            "deliver message",
            item.origin,
            **{
                "chat4all.message_id": item.message.id,
                "chat4all.channel": item.conversation.channel,
                "chat4all.attempt": str(item.attempts + 1),
            },
        ) as span:
            try:
                await self._attempt(item, span)
            except Exception as exc:  # its outcome could not be recorded (logged there)
                failed(span, f"not recorded: {type(exc).__name__}: {exc}")
            else:
                self._held.pop(item.message.id, None)

    async def _attempt(self, item: OutboxItem, span: Span) -> None:
        conversation = item.conversation
        key = (conversation.channel, conversation.account)
        breaker = self._breakers.setdefault(key, _Breaker())
        now = self.clock()
        if breaker.open_until > now:
            await self._record(
                "retry", item, self.outbox.retry, breaker.open_until, "circuit open", now
            )
            failed(span, "circuit open")
            return
        connector = self.connectors.get(conversation.channel)
        if connector is None:
            await self._record(
                "dead",
                item,
                self.outbox.dead,
                f"no connector for {conversation.channel}",
                now,
            )
            self.events.dispatched(conversation.channel, "failed", 0.0)
            return
        began = time.monotonic()
        try:
            with self.tracer.start_as_current_span(
                f"{conversation.channel} send",
                kind=SpanKind.CLIENT,
                attributes={"chat4all.account": conversation.account},
            ):
                provider_id = await connector.send(conversation, item.message, item.done)
        except RetryableDelivery as exc:
            failed(span, str(exc))
            await self._retryable(item, breaker, exc, began)
        except PermanentDelivery as exc:
            failed(span, str(exc))
            breaker.failures = 0
            await self._record("dead", item, self.outbox.dead, str(exc), self.clock(), exc.done)
            self._notify(item, "failed", str(exc))
            self.events.dispatched(conversation.channel, "failed", time.monotonic() - began)
            log.warning("message %s failed for good: %s", item.message.id, exc)
        except Exception as exc:  # an adapter bug must not kill the dispatcher: retry it
            log.exception("connector %s raised unexpectedly", conversation.channel)
            failed(span, f"{type(exc).__name__}: {exc}")
            await self._retryable(
                item, breaker, RetryableDelivery(f"{type(exc).__name__}: {exc}"), began
            )
        else:
            if breaker.open_until:
                self.events.breaker(conversation.account, False)
            breaker.failures, breaker.open_until = 0, 0.0
            await self._record("sent", item, self.outbox.sent, provider_id, self.clock())
            span.set_attribute("chat4all.provider_message_id", provider_id)
            log.debug("message %s sent (provider id %s)", item.message.id, provider_id)
            self._notify(item, "sent", None)
            self.events.dispatched(conversation.channel, "sent", time.monotonic() - began)

    async def _retryable(
        self, item: OutboxItem, breaker: _Breaker, exc: RetryableDelivery, began: float
    ) -> None:
        channel = item.conversation.channel
        now = self.clock()
        breaker.failures += 1
        if breaker.failures >= self.policy.breaker_threshold and breaker.open_until <= now:
            breaker.open_until = now + self.policy.breaker_cooldown
            self.events.breaker(item.conversation.account, True)
            log.error(
                "circuit open for %s account %s after %d failures in a row: %s",
                channel,
                item.conversation.account,
                breaker.failures,
                exc,
            )
        if item.attempts + 1 >= self.policy.max_attempts:
            reason = f"gave up after {item.attempts + 1} attempts: {exc}"
            await self._record("dead", item, self.outbox.dead, reason, now, exc.done)
            self._notify(item, "failed", reason)
            self.events.dispatched(channel, "dead", time.monotonic() - began)
            return
        await self._record(
            "retry",
            item,
            self.outbox.retry,
            now + self.backoff(item.attempts, exc.retry_after),
            str(exc),
            now,
            exc.done,
        )
        self.events.dispatched(channel, "retry", time.monotonic() - began)

    async def _record(
        self, what: str, item: OutboxItem, write: Callable[..., Awaitable[None]], *args: object
    ) -> None:
        """``write(item, *args)``, tried ``record_tries`` times; the last failure is logged and
        raised (the row stays in flight; the next start sends it again, counted)."""
        for attempt in range(self.policy.record_tries):
            try:
                await write(item, *args)
            except Exception as exc:
                if attempt + 1 == self.policy.record_tries:
                    log.error(
                        "could not record %s for message %s (%s: %s); trying again every round "
                        "(its conversation waits meanwhile)",
                        what,
                        item.message.id,
                        type(exc).__name__,
                        exc,
                    )
                    self._unrecorded.append((what, item, write, args))
                    self.events.unrecorded(len(self._unrecorded))
                    raise
                await asyncio.sleep(self.policy.record_backoff * 2**attempt)
            else:
                return

    async def _record_again(self) -> None:
        for entry in list(self._unrecorded):
            what, item, write, args = entry
            try:
                await write(item, *args)
            except Exception as exc:  # still refused: next round
                log.debug("%s for message %s still not recorded: %s", what, item.message.id, exc)
            else:
                self._unrecorded.remove(entry)
                self._held.pop(item.message.id, None)
                self.events.unrecorded(len(self._unrecorded))
                log.info("recorded %s for message %s at last", what, item.message.id)

    def _notify(self, item: OutboxItem, status: str, detail: str | None) -> None:
        if self.on_status is not None:
            try:
                self.on_status(item, status, detail)
            except Exception:  # a listener must never undo a recorded delivery
                log.exception("status listener failed for message %s", item.message.id)

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Seconds before the next attempt: the provider's word, else capped full jitter."""
        if retry_after is not None:
            return retry_after
        return jittered_backoff(
            attempts, self.policy.base_backoff, self.policy.max_backoff, self.rng
        )


async def _first(*waits: Awaitable[object], timeout: float) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
