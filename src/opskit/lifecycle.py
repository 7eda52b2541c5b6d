"""Signal-driven lifecycle: SIGTERM and SIGINT set a stop event; the service winds down itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Awaitable, Callable

__all__ = ["run_until_stopped", "sleep_or_stop", "jittered_backoff"]

log = logging.getLogger(__name__)


def run_until_stopped(
    main: Callable[[asyncio.Event], Awaitable[int]],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> int:
    """Run ``main(stop)`` on a fresh event loop (from ``loop_factory`` when given, e.g. uvloop's);
    SIGTERM/SIGINT set ``stop``. Returns its exit code.

    A second signal while stopping is logged and ignored: the service is already cleaning up its
    children, and cutting that short is what leaves orphans behind.
    """

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            name = signal.Signals(signum).name
            if stop.is_set():
                log.warning("%s received again; still stopping", name)
            else:
                log.info("%s received; stopping", name)
                stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await main(stop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)

    with asyncio.Runner(loop_factory=loop_factory) as runner_:
        return runner_.run(runner())


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` unless ``stop`` is set first; returns whether it was."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


def jittered_backoff(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before retry number ``attempts + 1``: ``base`` doubled per attempt, capped at
    ``cap``, drawn from the upper half of that so retries of many clients spread out."""
    ceiling = min(cap, base * 2**attempts)
    return rng.uniform(ceiling / 2, ceiling)
