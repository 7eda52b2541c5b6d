"""Use cases on dead letters: the messages given up on, and replaying them once the cause is
fixed. REST and gRPC reach them only through :class:`DeadLetters`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from chat4all.domain.model import Message
from chat4all.ports import Page

__all__ = ["DeadLetter", "DeadLetters", "DeadLetterStore"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: Message
    error: str
    """The last delivery error, the reason it was given up on."""


class DeadLetterStore(Protocol):
    async def dead_letters(
        self, tenant: str, cursor: str | None, limit: int
    ) -> Page[tuple[Message, str]]: ...

    async def replay(self, tenant: str, message_id: str, now: float) -> Message:
        """The dead message pending again (attempts from zero); ``NotFound`` when ``tenant``
        has no dead message ``message_id``."""
        ...


class DeadLetters:
    def __init__(
        self,
        store: DeadLetterStore,
        wake: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``wake``: tells the dispatcher a message is due (a replayed one goes at once)."""
        self._store = store
        self._wake = wake
        self._clock = clock

    async def list(self, tenant: str, cursor: str | None, limit: int) -> Page[DeadLetter]:
        """The tenant's dead letters, a page at a time, with their last error."""
        page = await self._store.dead_letters(tenant, cursor, limit)
        return Page(tuple(DeadLetter(m, e) for m, e in page.items), page.next_cursor)

    async def replay(self, tenant: str, message_id: str) -> Message:
        """Queue a dead message for delivery again."""
        message = await self._store.replay(tenant, message_id, self._clock())
        if self._wake is not None:
            self._wake()
        return message
