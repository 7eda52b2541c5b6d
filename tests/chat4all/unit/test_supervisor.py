"""The supervisor: a task that ends while the process runs is down (logged, named, dated); the
stop event ends the wait quietly; shutdown stops and gathers every task."""

from __future__ import annotations

import asyncio
import logging

import pytest

from chat4all.service_layer.supervisor import Supervisor


async def parked(stop: asyncio.Event) -> None:
    await stop.wait()


async def test_a_task_that_returns_on_its_own_is_down_too(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    supervisor = Supervisor(stop, clock=lambda: 1_796_058_131.0)
    supervisor.start("steady", parked(stop))

    async def quitter() -> None:
        await asyncio.sleep(0)

    supervisor.start("quitter", quitter())
    down = await asyncio.wait_for(supervisor.wait(), 10)
    assert down is not None and down.name == "quitter"
    assert down.reason == (
        "worker quitter stopped at 2026-11-30T17:02:11Z: it ended without being asked to stop"
    )
    assert [(s.name, s.running) for s in supervisor.states()] == [
        ("steady", True),
        ("quitter", False),
    ]
    assert any("quitter ended while the process runs" in r.getMessage() for r in caplog.records)
    await supervisor.shutdown()
    assert stop.is_set()
    assert supervisor.down() is down  # the steady one stopped as asked: not down
    assert [s.error for s in supervisor.states()] == ["stopped", down.error]


async def test_stop_ends_the_wait_and_shutdown_cancels_what_does_not_watch_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    supervisor = Supervisor(stop)
    forever = asyncio.Event()  # never set: a long poll
    supervisor.start("poller", forever.wait(), cancel_on_stop=True)  # type: ignore[arg-type]
    supervisor.start("worker", parked(stop))
    waiting = asyncio.ensure_future(supervisor.wait())
    await asyncio.sleep(0)
    stop.set()
    assert await asyncio.wait_for(waiting, 10) is None
    await asyncio.wait_for(supervisor.shutdown(), 10)
    assert all(not s.running and s.error == "stopped" for s in supervisor.states())
    assert supervisor.down() is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_names_are_unique() -> None:
    stop = asyncio.Event()
    supervisor = Supervisor(stop)
    supervisor.start("worker", parked(stop))
    with pytest.raises(ValueError, match="already runs"):
        supervisor.start("worker", parked(stop))
    await supervisor.shutdown()
