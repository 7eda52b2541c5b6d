"""What ``/ready`` (and gRPC health) answers: a list of named checks, each asked at once.

A check is one thing the process depends on: the database, its own tasks (the supervisor), the
partitioned log (NATS), Redis. A *required* check that fails makes the process not ready (503:
the orchestrator takes it out of the load balancer; liveness, ``/health``, stays up, so an
engine's outage restarts nothing). An optional one only marks the process *degraded*: it works
on without it (the API without Redis keeps per-process limits; without NATS it still accepts,
the outbox is in the database). Which are required depends on the roles the process runs: the
roles ask for them (:meth:`Readiness.require`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["READY_TIMEOUT", "Probe", "Readiness", "Report", "Outcome"]

READY_TIMEOUT: Final = 2.0
"""Seconds a check may take before it counts as failed (under the probes' 3 s timeout: a
frozen engine is a 503 naming it, not a probe timing out)."""

Probe = Callable[[], Awaitable[str | None]]
"""A check: why not (``None``, or nothing returned: fine); raising is failing too, its
exception the reason."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One check's answer."""

    name: str
    ok: bool
    required: bool
    detail: str | None = None
    """Why not, when not ``ok``."""


@dataclass(frozen=True, slots=True)
class Report:
    """Every check's answer, in the order they were added."""

    outcomes: tuple[Outcome, ...]

    @property
    def ready(self) -> bool:
        return all(o.ok for o in self.outcomes if o.required)

    @property
    def reason(self) -> str | None:
        """The failed required checks, ``name: why``, or ``None`` when ready."""
        failed = [f"{o.name}: {o.detail}" for o in self.outcomes if o.required and not o.ok]
        return "; ".join(failed) or None

    @property
    def degraded(self) -> list[str]:
        """The optional checks that failed."""
        return [o.name for o in self.outcomes if not o.required and not o.ok]

    def body(self) -> dict[str, Any]:
        """``/ready``'s JSON."""
        body: dict[str, Any] = {"ready": self.ready}
        if not self.ready:
            body["reason"] = self.reason
        body["degraded"] = self.degraded
        body["checks"] = {
            o.name: {"ok": o.ok, "required": o.required, "detail": o.detail} for o in self.outcomes
        }
        return body


class Readiness:
    """The process's checks, by name; calling it asks them all at once, each for at most
    ``timeout`` seconds."""

    def __init__(self, timeout: float = READY_TIMEOUT) -> None:
        self._timeout = timeout
        self._checks: dict[str, tuple[Probe, bool]] = {}
        self._ending: set[asyncio.Future[str | None]] = set()
        """Probes cut off at the timeout, still unwinding."""

    def add(self, name: str, probe: Probe, *, required: bool = True) -> None:
        if name in self._checks:
            raise ValueError(f"a readiness check named {name!r} exists already")
        self._checks[name] = (probe, required)

    def require(self, name: str) -> None:
        """The check ``name`` (added before) is required from now on: a role of this process
        cannot work without it."""
        probe, _ = self._checks[name]
        self._checks[name] = (probe, True)

    def __contains__(self, name: object) -> bool:
        return name in self._checks

    async def __call__(self) -> Report:
        names = list(self._checks)
        answers = await asyncio.gather(*(self._ask(self._checks[n][0]) for n in names))
        return Report(
            tuple(
                Outcome(name, why is None, self._checks[name][1], why)
                for name, why in zip(names, answers, strict=True)
            )
        )

    async def _ask(self, probe: Probe) -> str | None:
        task = asyncio.ensure_future(probe())
        try:
            done, _ = await asyncio.wait({task}, timeout=self._timeout)
        finally:
            if not task.done():  # past the timeout, or this request cancelled
                task.cancel()  # its unwinding (closing a connection in doubt) is not waited for
                self._ending.add(task)
                task.add_done_callback(self._ended)
        if not done:
            return f"no answer within {self._timeout:g} s"
        try:
            return task.result()
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            return f"{type(exc).__name__}: {first}" if first else type(exc).__name__

    def _ended(self, task: asyncio.Future[str | None]) -> None:
        self._ending.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a probe cut off may end in an error, as expected
