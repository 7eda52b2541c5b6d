"""The Telegram output's place in the video chat, each transition at the py-tgcalls boundary.

``FakeTgCalls`` raises pyrogram's and py-tgcalls' own exceptions and emits their real update
objects (``ChatUpdate``, ``UpdatedGroupCallParticipant``) the way py-tgcalls does; the states
reach a recording :class:`CallEvents` sink, and the metrics turn them into ``call_state``,
``stream_up`` and ``/status``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pyrogram.errors import ChannelPrivate, FloodWait, GroupcallForbidden
from pytgcalls.exceptions import NoActiveGroupCall
from pytgcalls.types import ChatUpdate, Device, GroupCallParticipant

from tests.tgstream.fakes import CHAT, FakeSleep, FakeTgCalls, RecordingEvents
from tests.tgstream.unit.test_tgcalls import unit, until
from tgstream.adapters.tgcalls import TelegramOutput
from tgstream.callstate import CALL_REASONS, CallState
from tgstream.config import QUALITY_PRESETS, Settings
from tgstream.metrics import Metrics

Q = QUALITY_PRESETS["360p"]
Action = GroupCallParticipant.Action


class Calls:
    """Records what the output reports, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[CallState, str]] = []
        self.rebuilds = 0

    def call_state(self, state: CallState, reason: str = "", detail: str = "") -> None:
        assert reason in CALL_REASONS, reason
        self.seen.append((state, reason))

    def client_rebuilt(self) -> None:
        self.rebuilds += 1


def make(
    fake: FakeTgCalls,
    *,
    clients: list[FakeTgCalls] | None = None,
    on_call_ended: Any = "wait",
) -> tuple[TelegramOutput, Calls, FakeSleep, RecordingEvents]:
    calls, sleep, events = Calls(), FakeSleep(), RecordingEvents()
    fresh = iter(clients or [])
    out = TelegramOutput(
        fake,
        CHAT,
        Q,
        events,
        sleep=sleep,
        poll_interval=60.0,
        call_events=calls,
        on_call_ended=on_call_ended,
        new_client=(lambda: next(fresh)) if clients is not None else None,
    )
    return out, calls, sleep, events


async def test_a_healthy_start_goes_joining_then_in_call_and_close_reports_none() -> None:
    fake = FakeTgCalls()
    out, calls, _, _ = make(fake)
    await out.open()
    assert calls.seen == [("joining", ""), ("in_call", "")]
    await out.close()
    assert calls.seen[-1] == ("none", "")


async def test_kicked_from_the_group_is_out_with_the_reason_until_added_back() -> None:
    fake = FakeTgCalls()
    out, calls, sleep, events = make(fake)
    await out.open()
    try:
        fake.play_errors = [ChannelPrivate(), ChannelPrivate()]  # not a member any more
        await fake.kick()
        assert (out.state, out.reason) == ("out", "kicked")
        await until(lambda: out.joined)  # added back: the third try succeeds
        assert calls.seen[2:] == [("out", "kicked"), ("out", "no_access"), ("in_call", "")]
        assert sleep.waits == [1, 2]
        assert events.reconnects == 1
    finally:
        await out.close()


async def test_removed_from_the_video_chat_by_an_admin_rejoins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTgCalls()
    out, calls, _, _ = make(fake)
    await out.open()
    try:
        await fake.participant(Action.LEFT, user_id=777)  # someone else left: nothing to do
        assert out.state == "in_call"
        with caplog.at_level(logging.WARNING):
            await fake.participant(Action.LEFT)
            assert ("out", "removed") in calls.seen
            await until(lambda: out.joined)
        assert "removed from the video chat of CHAT_ID=-100123" in caplog.text
        assert len(fake.plays) == 2
    finally:
        await out.close()


async def test_muted_by_an_admin_is_its_own_state_and_frames_go_on() -> None:
    fake = FakeTgCalls()
    out, calls, _, _ = make(fake)
    await out.open()
    try:
        await fake.participant(Action.UPDATED, muted_by_admin=True)
        assert (out.state, out.reason) == ("muted", "muted")
        await out.write(unit(Q, 1))
        assert fake.sent(Device.CAMERA), "the picture still goes out while muted"
        await fake.participant(Action.UPDATED, muted_by_admin=False)
        assert out.state == "in_call"
        assert calls.seen[2:] == [("muted", "muted"), ("in_call", "")]
        assert len(fake.plays) == 1  # no rejoin: still in the call throughout
    finally:
        await out.close()


async def test_call_ended_with_wait_does_not_recreate_until_someone_starts_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTgCalls()
    clients = [FakeTgCalls()]
    out, calls, sleep, _ = make(fake, clients=clients)  # rebuilds possible: none may happen
    await out.open()
    assert fake.plays[0][2].auto_start is True  # a start with no video chat creates one
    try:
        # Nobody starts a new one for four checks; then someone does.
        fake.play_errors = [NoActiveGroupCall() for _ in range(4)]
        with caplog.at_level(logging.WARNING):
            await fake.end_call()
            await until(lambda: out.joined)
        assert [config.auto_start for _, _, config in fake.plays[1:]] == [False] * 5
        assert ("out", "call_ended") in calls.seen
        assert ("out", "no_rights") not in calls.seen
        assert out.rebuilds == 0, "waiting for a video chat is not a refusal"
        assert sleep.waits == [1, 2, 4, 8]
        assert "ON_CALL_ENDED=wait" in caplog.text
        assert not any(r.levelno >= logging.ERROR for r in caplog.records), caplog.text
        # Joined again: the next end waits again, a restart would create one.
        fake.play_errors = []
        await fake.end_call()
        await until(lambda: out.joined)
        assert fake.plays[-1][2].auto_start is False
    finally:
        await out.close()


async def test_call_ended_with_recreate_starts_a_new_one_at_once() -> None:
    fake = FakeTgCalls()
    out, calls, sleep, _ = make(fake, on_call_ended="recreate")
    await out.open()
    try:
        await fake.end_call()
        await until(lambda: out.joined)
        assert [config.auto_start for _, _, config in fake.plays] == [True, True]
        assert sleep.waits == []
        assert calls.seen[2:] == [("out", "call_ended"), ("in_call", "")]
    finally:
        await out.close()


async def test_repeated_refusals_rebuild_the_client_and_the_new_one_joins() -> None:
    first, second = FakeTgCalls(), FakeTgCalls()
    out, calls, _, _ = make(first, clients=[second])
    first.play_errors = [GroupcallForbidden() for _ in range(3)]
    await out.open()
    try:
        await until(lambda: out.joined)
        assert out.rebuilds == 1
        assert calls.rebuilds == 1
        assert len(first.plays) == 3
        assert first.mtproto_client.stopped == 1, "the old MTProto client is stopped"
        assert second.started == 1 and len(second.plays) == 1
        assert ("out", "forbidden") in calls.seen
        assert calls.seen[-1] == ("in_call", "")
        # An update still arriving from the old client changes nothing.
        await first.emit(ChatUpdate(CHAT, ChatUpdate.Status.KICKED))
        assert out.joined
        await out.write(unit(Q, 1))
        assert second.sent(Device.CAMERA) and not first.sent(Device.CAMERA)
    finally:
        await out.close()
    assert second.mtproto_client.stopped == 1


async def test_floodwait_at_client_start_is_waited_out_then_starts_and_joins() -> None:
    fake = FakeTgCalls()
    fake.start_errors = [FloodWait(value=7)]
    out, calls, sleep, _ = make(fake)
    await out.open()  # does not raise, does not block the engine for 7 s
    try:
        await until(lambda: out.joined)
        assert sleep.waits == [7]
        assert fake.started == 1
        assert calls.seen == [("joining", ""), ("out", "flood_wait"), ("in_call", "")]
    finally:
        await out.close()


async def test_a_client_whose_start_failed_is_replaced_not_started_again() -> None:
    first, second = FakeTgCalls(), FakeTgCalls()
    first.start_errors = [FloodWait(value=3)]
    out, calls, sleep, _ = make(first, clients=[second])
    await out.open()
    try:
        await until(lambda: out.joined)
        assert sleep.waits == [3]
        assert first.started == 0 and first.plays == []
        assert second.started == 1 and len(second.plays) == 1
        assert out.rebuilds == calls.rebuilds == 1
    finally:
        await out.close()


# -- what the metrics make of it ------------------------------------------------------------


def value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def test_stream_up_means_fed_and_reaching_the_viewers() -> None:
    metrics = Metrics(CollectorRegistry(), output="telegram")
    metrics.state("streaming")
    metrics.call_state("joining")
    assert value(metrics, "stream_up") == 0
    metrics.call_state("in_call")
    assert value(metrics, "stream_up") == 1
    assert value(metrics, "call_state", {"call_state": "in_call"}) == 1
    metrics.call_state("out", "kicked", "KICKED")
    assert value(metrics, "stream_up") == 0
    assert value(metrics, "call_state", {"call_state": "out"}) == 1
    assert value(metrics, "call_out_reason", {"call_out_reason": "kicked"}) == 1
    _, status = metrics.status()
    assert status["stream_up"] is False
    assert status["call"]["state"] == "out"
    assert status["call"]["reason"] == "kicked"
    assert "kicked" in status["last_error"]["message"]
    metrics.call_state("muted", "muted")
    assert value(metrics, "stream_up") == 0
    metrics.call_state("in_call")
    metrics.client_rebuilt()
    assert value(metrics, "stream_up") == 1
    assert value(metrics, "call_out_reason", {"call_out_reason": "none"}) == 1
    assert value(metrics, "call_client_rebuilds_total") == 1
    _, status = metrics.status()
    assert status["call"]["client_rebuilds"] == 1 and status["stream_up"] is True
    metrics.state("stopping")
    assert value(metrics, "stream_up") == 0


def test_outputs_without_a_call_keep_stream_up_as_the_engine_says() -> None:
    metrics = Metrics(CollectorRegistry(), output="rtmp")
    metrics.state("slate")
    assert value(metrics, "stream_up") == 1
    assert value(metrics, "call_state", {"call_state": "none"}) == 1


def test_on_call_ended_defaults_to_wait_and_refuses_anything_else() -> None:
    assert Settings(_env_file=None).ON_CALL_ENDED == "wait"  # type: ignore[call-arg]
    assert Settings(_env_file=None, ON_CALL_ENDED="recreate").ON_CALL_ENDED == "recreate"  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="ON_CALL_ENDED"):
        Settings(_env_file=None, ON_CALL_ENDED="restart")  # type: ignore[call-arg]


def test_stream_up_is_0_while_the_publisher_s_destination_does_not_take_the_stream() -> None:
    metrics = Metrics(CollectorRegistry(), output="rtmp")
    metrics.output_flowing(False)  # the publisher opens: nothing has reached the server yet
    metrics.state("streaming")
    assert value(metrics, "stream_up") == 0
    metrics.output_flowing(True)
    assert value(metrics, "stream_up") == 1
    metrics.output_flowing(False)  # lost: reconnecting, the viewers get nothing
    assert value(metrics, "stream_up") == 0
    assert metrics.status()[1]["stream_up"] is False
    metrics.output_flowing(True)
    assert value(metrics, "stream_up") == 1
