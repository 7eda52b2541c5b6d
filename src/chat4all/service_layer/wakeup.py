"""The dispatcher's wake-up: "a message is waiting", from whoever accepted it to whoever sends.

A worker polls its outbox every ``poll_interval`` anyway (retries come due); a wake-up only
saves that wait. In one process it is an :class:`asyncio.Event`; with API and workers in
separate processes the same port is carried by the message bus, and a lost wake-up costs at
most one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

__all__ = ["Wakeup", "LocalWakeup"]


class Wakeup(Protocol):
    def wake(self) -> None:
        """Something is waiting: end the waits now (and the next one, if none is waiting)."""
        ...

    async def wait(self, timeout: float) -> None:
        """Until woken or ``timeout`` seconds passed; consumes the wake-up."""
        ...


class LocalWakeup:
    """The in-process adapter."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()
