"""The load shedder's verdicts: when it starts and stops refusing sends (with its hysteresis),
what a refused send is told, what it reports, and that a failed measurement changes nothing."""

from __future__ import annotations

import pytest

from chat4all.errors import Overloaded, StoreUnavailable
from chat4all.ports import Backlog
from chat4all.service_layer.shedding import (
    OUTBOX_AGE,
    OUTBOX_DEPTH,
    LoadShedder,
    ShedPolicy,
)


class Source:
    """A backlog set by the test; ``failing``: the database cannot answer."""

    def __init__(self) -> None:
        self.value = Backlog(0.0, 0)
        self.failing = False
        self.asked: list[tuple[float, int]] = []

    async def backlog(self, now: float, count_up_to: int = 0) -> Backlog:
        self.asked.append((now, count_up_to))
        if self.failing:
            raise StoreUnavailable("the database cannot answer now")
        return self.value


class Events:
    def __init__(self) -> None:
        self.states: list[bool] = []
        self.refused: list[str] = []

    def shedding(self, on: bool) -> None:
        self.states.append(on)

    def shed(self, reason: str) -> None:
        self.refused.append(reason)


def shedder(policy: ShedPolicy) -> tuple[LoadShedder, Source, Events]:
    source, events = Source(), Events()
    return LoadShedder(source, policy, events, clock=lambda: 1000.0), source, events


async def test_sheds_past_the_age_bound_and_stops_only_under_half_of_it() -> None:
    shed, source, events = shedder(ShedPolicy(outbox_age=60))
    await shed.refresh()
    shed.check()  # nothing waits: admitted
    assert source.asked == [(1000.0, 0)]  # the depth is not counted when not watched
    source.value = Backlog(60.0, 5000)
    await shed.refresh()
    shed.check()  # at the bound, not over it
    source.value = Backlog(61.0, 0)
    await shed.refresh()
    with pytest.raises(Overloaded) as refused:
        shed.check()
    assert refused.value.reason == OUTBOX_AGE
    assert refused.value.retry_after == 5.0
    assert "61 s" in str(refused.value) and "CHAT4ALL_SHED_OUTBOX_AGE=60" in str(refused.value)
    source.value = Backlog(31.0, 0)  # draining, still over half the bound: no flapping
    await shed.refresh()
    with pytest.raises(Overloaded):
        shed.check()
    source.value = Backlog(30.0, 0)
    await shed.refresh()
    shed.check()
    assert events.states == [False, True, False]
    assert events.refused == [OUTBOX_AGE, OUTBOX_AGE]


async def test_the_depth_bound_counts_only_up_to_it() -> None:
    shed, source, events = shedder(ShedPolicy(outbox_age=0, outbox_depth=100))
    source.value = Backlog(3600.0, 101)  # the age is not watched
    await shed.refresh()
    assert source.asked == [(1000.0, 100)]
    with pytest.raises(Overloaded) as refused:
        shed.check()
    assert refused.value.reason == OUTBOX_DEPTH
    assert "CHAT4ALL_SHED_OUTBOX_DEPTH=100" in str(refused.value)
    source.value = Backlog(0.0, 51)
    await shed.refresh()
    assert shed.reason == OUTBOX_DEPTH
    source.value = Backlog(0.0, 50)
    await shed.refresh()
    assert shed.reason is None
    assert events.refused == [OUTBOX_DEPTH]


async def test_a_failed_measurement_changes_nothing() -> None:
    shed, source, _ = shedder(ShedPolicy(outbox_age=10))
    source.value = Backlog(11.0, 0)
    await shed.refresh()
    source.failing = True
    await shed.refresh()
    assert shed.reason == OUTBOX_AGE  # still shedding: nothing says the workers caught up
    source.failing, source.value = False, Backlog(0.0, 0)
    await shed.refresh()
    assert shed.reason is None


def test_off_when_no_bound_is_set() -> None:
    assert not ShedPolicy(outbox_age=0, outbox_depth=0).on
    assert ShedPolicy(outbox_age=0, outbox_depth=1).on
