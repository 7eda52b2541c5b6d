"""Load shedding: while the workers are behind past a bound, the API refuses new sends.

The :class:`LoadShedder` of an API process measures the backlog in the background (one cheap
query, at most every ``ShedPolicy.every`` seconds, never per request) and every send asks it
first (:meth:`LoadShedder.check`, a flag read): while it sheds, a send is refused with
:class:`~chat4all.errors.Overloaded` (503 with ``Retry-After``, gRPC ``UNAVAILABLE``) before
anything is stored. Reads and every other request go on.

It starts shedding when the oldest message the workers could send now has waited longer than
``outbox_age`` seconds, or when more than ``outbox_depth`` messages wait; it stops once every
bound it watches is back under ``release`` (half) of it: the gap between the two is the
hysteresis that keeps it from flapping at the edge. A measurement that fails (the database
cannot answer) changes nothing: sends meet the database's own 503 meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from chat4all.errors import Overloaded
from chat4all.ports import Backlog
from opskit.lifecycle import sleep_or_stop

__all__ = [
    "LoadShedder",
    "ShedPolicy",
    "ShedEvents",
    "BacklogSource",
    "OUTBOX_AGE",
    "OUTBOX_DEPTH",
]

log = logging.getLogger(__name__)

OUTBOX_AGE: Final = "outbox_age"
"""Reason: the oldest due message waited longer than ``ShedPolicy.outbox_age``."""
OUTBOX_DEPTH: Final = "outbox_depth"
"""Reason: more than ``ShedPolicy.outbox_depth`` messages wait."""


@dataclass(frozen=True, slots=True)
class ShedPolicy:
    outbox_age: float = 60.0
    """Seconds; 0: not watched (``CHAT4ALL_SHED_OUTBOX_AGE``)."""
    outbox_depth: int = 0
    """Messages; 0: not watched (``CHAT4ALL_SHED_OUTBOX_DEPTH``)."""
    release: float = 0.5
    """Shedding stops once each watched measure is at most this fraction of its bound."""
    every: float = 1.0
    """Seconds between measurements."""
    retry_after: float = 5.0
    """What a refused caller is told to wait, in seconds (several measurements)."""

    @property
    def on(self) -> bool:
        """Whether any bound is watched."""
        return self.outbox_age > 0 or self.outbox_depth > 0


class BacklogSource(Protocol):
    """Where the backlog is measured (the store's outbox: :meth:`SqlStore.backlog`)."""

    async def backlog(self, now: float, count_up_to: int = 0) -> Backlog:
        """How far behind the workers are at ``now``, in one cheap query; the depth counted
        up to ``count_up_to + 1`` rows (0: not counted)."""
        ...


class ShedEvents(Protocol):
    def shedding(self, on: bool) -> None:
        """Shedding started (``True``) or stopped."""
        ...

    def shed(self, reason: str) -> None:
        """One send refused, and why (:data:`OUTBOX_AGE`, :data:`OUTBOX_DEPTH`)."""
        ...


class LoadShedder:
    """One API process's view of the backlog, and its verdict on sends."""

    def __init__(
        self,
        source: BacklogSource,
        policy: ShedPolicy,
        events: ShedEvents,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self.policy = policy
        self._events = events
        self._clock = clock
        self.reason: str | None = None
        """Why sends are refused now (``None``: they are not)."""
        self.backlog = Backlog(0.0, 0)
        """The latest measurement."""
        self._failing = False
        events.shedding(False)

    def check(self) -> None:
        """Raise :class:`Overloaded` while shedding (a send asks before anything else)."""
        reason = self.reason
        if reason is None:
            return
        self._events.shed(reason)
        raise Overloaded(
            f"the hub is overloaded ({self._why(reason)}): no send is accepted now; retry "
            f"after {self.policy.retry_after:g} s",
            reason,
            self.policy.retry_after,
        )

    async def refresh(self) -> None:
        """Measure once and decide (with the hysteresis); a failed measurement changes
        nothing (logged once until one succeeds again)."""
        policy = self.policy
        try:
            backlog = await self._source.backlog(self._clock(), policy.outbox_depth)
        except Exception as exc:  # the database cannot answer: sends meet that themselves
            if not self._failing:
                log.warning(
                    "load shedding cannot measure the backlog (trying every %g s): %s: %s",
                    policy.every,
                    type(exc).__name__,
                    exc,
                )
            self._failing = True
            return
        self._failing = False
        self.backlog = backlog
        over = self._over(backlog, 1.0)
        if self.reason is None and over is not None:
            self.reason = over
            self._events.shedding(True)
            log.warning(
                "load shedding started: %s; sends are refused (503) until the workers catch up",
                self._why(over),
            )
        elif self.reason is not None and self._over(backlog, policy.release) is None:
            self.reason = None
            self._events.shedding(False)
            log.warning(
                "load shedding stopped: the oldest due message waits %.1f s, %d waiting; "
                "sends are accepted again",
                backlog.oldest_due_age,
                backlog.depth,
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Measure every ``policy.every`` seconds until ``stop`` is set."""
        while not stop.is_set():
            await self.refresh()
            await sleep_or_stop(stop, self.policy.every)

    def _over(self, backlog: Backlog, fraction: float) -> str | None:
        """The first bound ``backlog`` exceeds at ``fraction`` of it, or ``None``."""
        policy = self.policy
        if policy.outbox_age > 0 and backlog.oldest_due_age > policy.outbox_age * fraction:
            return OUTBOX_AGE
        if policy.outbox_depth > 0 and backlog.depth > policy.outbox_depth * fraction:
            return OUTBOX_DEPTH
        return None

    def _why(self, reason: str) -> str:
        backlog, policy = self.backlog, self.policy
        if reason == OUTBOX_AGE:
            return (
                f"the oldest message due for delivery has waited {backlog.oldest_due_age:.0f} s, "
                f"over CHAT4ALL_SHED_OUTBOX_AGE={policy.outbox_age:g}"
            )
        return (
            f"{backlog.depth} or more messages wait for delivery, over "
            f"CHAT4ALL_SHED_OUTBOX_DEPTH={policy.outbox_depth}"
        )
