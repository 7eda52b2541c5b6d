"""Supervision of a process's long-running tasks (API servers, workers, pollers, housekeeping).

Every task is started through :meth:`Supervisor.start`. One that ends while the process was not
asked to stop (an exception, or a return) is *down*: it is logged at once with its traceback,
its state says since when and why (``/ready`` shows it), and :meth:`Supervisor.wait` returns
it, so the process can exit non-zero and its service manager restart it. A worker is written
to survive its own failures (a failed round is logged and retried); a task that still dies is a
bug or a lost resource, and a fresh process is the way out.

:meth:`Supervisor.wait` is aiogram's ``start_polling`` shape: wait on the first of the tasks
(or the stop event) to complete, then :meth:`Supervisor.shutdown` stops the rest and gathers
them so that their errors surface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["Supervisor", "WorkerState"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerState:
    name: str
    running: bool
    since: float
    """When it started, or when it went down (Unix seconds)."""
    error: str | None = None
    """Why it went down: the exception's type and message, or that it ended on its own."""

    @property
    def reason(self) -> str:
        """One line for an operator: ``worker dispatcher stopped at 2026-11-30T17:02:11Z:
        RuntimeError: ...``."""
        at = datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.running:
            return f"worker {self.name} running since {at}"
        return f"worker {self.name} stopped at {at}: {self.error}"


@dataclass(frozen=True, slots=True)
class _Task:
    task: asyncio.Task[None]
    cancel_on_stop: bool


class Supervisor:
    """The tasks of one process and their states; see the module's documentation."""

    def __init__(self, stop: asyncio.Event, clock: Callable[[], float] = time.time) -> None:
        self.stop = stop
        self._clock = clock
        self._tasks: dict[str, _Task] = {}
        self._states: dict[str, WorkerState] = {}
        self._down = asyncio.Event()

    def start(
        self,
        name: str,
        work: Coroutine[Any, Any, None],
        *,
        cancel_on_stop: bool = False,
    ) -> asyncio.Task[None]:
        """Run ``work`` as the task ``name``. ``cancel_on_stop``: it does not watch the stop
        event (a long poll) and is cancelled at shutdown instead."""
        if name in self._tasks:
            work.close()
            raise ValueError(f"a task named {name!r} already runs")
        task = asyncio.create_task(work, name=name)
        self._tasks[name] = _Task(task, cancel_on_stop)
        self._states[name] = WorkerState(name, True, self._clock())
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        name = task.get_name()
        if task.cancelled():
            if self.stop.is_set():
                self._states[name] = WorkerState(name, False, self._clock(), "stopped")
                return
            error = "cancelled"
            log.error("worker %s was cancelled while the process runs", name)
        elif (exc := task.exception()) is not None:
            error = f"{type(exc).__name__}: {exc}"
            log.error("worker %s died: %s", name, error, exc_info=exc)
        elif self.stop.is_set():
            self._states[name] = WorkerState(name, False, self._clock(), "stopped")
            return
        else:
            error = "it ended without being asked to stop"
            log.error("worker %s ended while the process runs", name)
        self._states[name] = WorkerState(name, False, self._clock(), error)
        self._down.set()

    def states(self) -> tuple[WorkerState, ...]:
        """Every task's state, in start order."""
        return tuple(self._states.values())

    def down(self) -> WorkerState | None:
        """The first task that went down while the process runs, if any."""
        failed = [s for s in self._states.values() if not s.running and s.error != "stopped"]
        return min(failed, key=lambda s: s.since) if failed else None

    async def wait(self) -> WorkerState | None:
        """Until the stop event is set (``None``) or a task goes down (its state)."""
        stopping = asyncio.ensure_future(self.stop.wait())
        failing = asyncio.ensure_future(self._down.wait())
        try:
            await asyncio.wait((stopping, failing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (stopping, failing):
                waiter.cancel()
            await asyncio.gather(stopping, failing, return_exceptions=True)
        return self.down()

    async def shutdown(self) -> None:
        """Set the stop event, cancel the tasks that do not watch it, and wait for all: an
        error raised meanwhile is logged (their own finally blocks run)."""
        self.stop.set()
        for entry in self._tasks.values():
            if entry.cancel_on_stop:
                entry.task.cancel()
        tasks = [entry.task for entry in self._tasks.values()]
        # errors were logged by _ended; gathering retrieves them so asyncio does not warn
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
