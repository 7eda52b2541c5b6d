"""The shared waiting and backoff helpers of opskit.lifecycle."""

from __future__ import annotations

import asyncio
import random
import time

from opskit.lifecycle import jittered_backoff, sleep_or_stop


async def test_sleep_or_stop_returns_early_when_stopped() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    began = time.monotonic()
    assert await sleep_or_stop(stop, 10) is True
    assert time.monotonic() - began < 1
    assert await sleep_or_stop(asyncio.Event(), 0.01) is False


def test_jittered_backoff_doubles_within_its_upper_half_and_is_capped() -> None:
    rng = random.Random(5)
    for attempts in range(12):
        ceiling = min(60.0, 1.0 * 2**attempts)
        wait = jittered_backoff(attempts, 1.0, 60.0, rng)
        assert ceiling / 2 <= wait <= ceiling
