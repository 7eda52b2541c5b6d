"""Group commit: concurrent changes share one transaction (one fsync for many).

A :class:`GroupCommitter` is given the function that writes a batch; each caller of
:meth:`GroupCommitter.submit` returns only once its own change is committed, with its own result.
One bad change does not fail the others of its batch: when a batch fails, each of its changes
goes again alone, and only the guilty one's caller hears of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Generic, TypeVar

__all__ = ["GroupCommitter", "GROUP_MAX"]

GROUP_MAX: Final = 128
"""Changes committed together at most (one transaction, one fsync)."""

J = TypeVar("J")
R = TypeVar("R")


class GroupCommitter(Generic[J, R]):
    """``write(batch)`` commits ``batch`` in one transaction and returns one result per job, in
    order (or raises: then nothing of the batch committed)."""

    def __init__(
        self, write: Callable[[Sequence[J]], Awaitable[Sequence[R]]], limit: int = GROUP_MAX
    ) -> None:
        self._write = write
        self._limit = limit
        self._pending: asyncio.Queue[tuple[J, asyncio.Future[R]]] = asyncio.Queue()
        self._grouper: asyncio.Task[None] | None = None

    async def submit(self, job: J) -> R:
        """Commit ``job`` with whatever else is waiting; its result once committed."""
        if self._grouper is None or self._grouper.done():
            self._grouper = asyncio.create_task(  # not the first caller's request context
                self._group_commits(), name="group-commit", context=contextvars.Context()
            )
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.put_nowait((job, future))
        # The future is this caller's alone: a cancelled caller cancels it, and its job is
        # committed with the batch all the same (the grouper skips a done future's result).
        return await future

    async def close(self) -> None:
        if self._grouper is not None:
            self._grouper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._grouper

    async def _group_commits(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while not self._pending.empty() and len(batch) < self._limit:
                batch.append(self._pending.get_nowait())
            try:
                await self._commit(batch)
            except Exception:
                if len(batch) == 1:
                    continue  # its caller has heard
                # Nothing of the batch committed. One bad change must not fail the others (and
                # other tenants'): each goes again alone, and only the guilty one fails.
                for entry in batch:
                    with contextlib.suppress(Exception):
                        await self._commit([entry])

    async def _commit(self, batch: list[tuple[J, asyncio.Future[R]]]) -> None:
        """One transaction for ``batch``; each future gets its result (a lone job its error)."""
        try:
            results = await self._write([job for job, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
