"""The dispatcher: outbox → connector, one message in flight per conversation.

Each round claims the due heads of idle conversations (the store guarantees per-conversation
FIFO), sends them concurrently, and records each outcome:

- success: ``sent`` with the provider's id;
- :class:`~chat4all.errors.RetryableDelivery`: back to pending after an exponential backoff
  with full jitter (1 s, 2 s, 4 s ... capped), or after the provider's ``retry_after`` when it
  gave one; after ``max_attempts`` the message is dead-lettered and ``failed``;
- :class:`~chat4all.errors.PermanentDelivery`: ``failed`` and dead-lettered at once;
- :class:`~chat4all.errors.AccountPaused` (a retryable error): back to pending after its
  ``retry_after``, without opening the breaker and without counting the attempt (a paused
  account's messages wait for an operator however long, and never die of their attempts).

A circuit breaker per channel account opens after ``breaker_threshold`` retryable failures in a
row: for ``breaker_cooldown`` seconds that account's messages wait without calling the provider,
then one probe decides.

Several dispatchers (in one process or many) share one outbox: each claims under a worker id
of its own (``host:pid:random``) with a lease of ``DispatchPolicy.lease`` seconds, renewed every
third of it while its items are being delivered. Claiming, renewing, polling and waking up, and
the handling of a failed round (logged, retried), are the loop all outbox workers share:
:class:`~chat4all.service_layer.outbox_worker.OutboxWorker`.

A crash between the provider call and ``sent`` leaves the row in flight until its lease runs
out; then any dispatcher takes it again (at start ``recover``, or in any claim) and counts it:
the only case of a duplicate send.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from opentelemetry.trace import Span, SpanKind, Tracer

from chat4all.domain.lease import worker_id
from chat4all.errors import AccountPaused, PermanentDelivery, RetryableDelivery
from chat4all.ports import Connector, Outbox, OutboxItem
from chat4all.service_layer.outbox_worker import OutboxWorker
from chat4all.service_layer.wakeup import LocalWakeup, Wakeup
from chat4all.telemetry import NO_TRACER, continued, failed
from opskit.lifecycle import jittered_backoff

__all__ = ["Dispatcher", "DispatchPolicy", "DispatchEvents", "NullDispatchEvents"]

log = logging.getLogger(__name__)

_BATCH: Final = 64


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
    tracer: Tracer = NO_TRACER
    wakeup: Wakeup = field(default_factory=LocalWakeup)
    """Rung when a message is accepted (or replayed), so it goes out before the next poll."""
    worker: str = field(default_factory=worker_id)
    """Whose leases this dispatcher's claims are."""
    _breakers: dict[tuple[str, str], _Breaker] = field(default_factory=dict)
    _unrecorded: list[_Unrecorded] = field(default_factory=list)
    """Outcomes the store refused even after ``record_tries``: tried again every round (their
    rows stay in flight, holding their conversations, until they are recorded)."""
    _loop: OutboxWorker[OutboxItem] = field(init=False)

    def __post_init__(self) -> None:
        self._loop = OutboxWorker(
            "dispatcher",
            self.outbox,
            self._deliver,
            key=_message_id,
            batch=_BATCH,
            lease=self.policy.lease,
            poll_interval=self.policy.poll_interval,
            clock=self.clock,
            wakeup=self.wakeup,
            worker=self.worker,
            before_round=self._record_again,
            on_recovered=self._recovered,
        )

    def wake(self) -> None:
        """A new message is in the outbox: dispatch without waiting for the next poll."""
        self.wakeup.wake()

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: the outbox workers' loop (recover, claim, deliver, renew leases; a
        failed round is logged and retried)."""
        await self._loop.run(stop)

    async def round(self) -> int:
        """Claim and send one batch; returns how many were claimed."""
        return await self._loop.round()

    def _recovered(self, count: int) -> None:
        if count:
            log.warning(
                "%d message(s) were in flight when the previous run stopped (their worker's lease "
                "expired); sending them again (a provider may see each twice)",
                count,
            )
        self.events.recovered(count)

    def lapsed(self, count: int) -> None:
        """``count`` rows of a worker whose lease ran out were put back to pending by a claim
        (the store tells, once per lapsed lease: ``SqlOutbox.lapsed``)."""
        if count:
            log.warning(
                "%d message(s) were in flight when their worker's lease ran out; sending them "
                "again (a provider may see each twice)",
                count,
            )
        self.events.recovered(count)

    async def _deliver(self, item: OutboxItem) -> bool:
        """One attempt, in a span that continues the trace of the request that accepted it;
        whether its outcome is recorded (if not, it is kept and tried again every round)."""
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
                return False
            return True

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
            self.events.dispatched(conversation.channel, "sent", time.monotonic() - began)

    async def _retryable(
        self, item: OutboxItem, breaker: _Breaker, exc: RetryableDelivery, began: float
    ) -> None:
        channel = item.conversation.channel
        now = self.clock()
        if isinstance(exc, AccountPaused):
            # the account waits for an operator (a new token, a resume): its messages wait
            # too, neither opening the breaker nor spending their attempts
            await self._record(
                "retry",
                item,
                self.outbox.retry,
                now + (exc.retry_after or self.policy.breaker_cooldown),
                str(exc),
                now,
                exc.done,
                False,  # not counted: a paused account's messages never die of their attempts
            )
            self.events.dispatched(channel, "paused", time.monotonic() - began)
            return
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
                self._loop.release(item)
                self.events.unrecorded(len(self._unrecorded))
                log.info("recorded %s for message %s at last", what, item.message.id)

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Seconds before the next attempt: the provider's word, else capped full jitter."""
        if retry_after is not None:
            return retry_after
        return jittered_backoff(
            attempts, self.policy.base_backoff, self.policy.max_backoff, self.rng
        )


def _message_id(item: OutboxItem) -> str:
    return item.message.id
