"""The Telegram output against a fake at the py-tgcalls boundary that speaks its real types.

``FakeTgCalls`` checks what py-tgcalls itself checks (``@statictypes``: ``bytes``, ``Device``,
``Frame.Info``, a ``MediaStream``), raises the library's own exceptions, and emits real
``ChatUpdate`` objects the way py-tgcalls does: after it has already dropped the call.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import struct
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from ntgcalls import MediaSource
from pyrogram.errors import AuthKeyUnregistered, ChatAdminRequired, FloodWait, SessionRevoked
from pyrogram.storage import Storage
from pytgcalls.exceptions import NoActiveGroupCall
from pytgcalls.types import ChatUpdate, Device

from tests.tgstream.fakes import CHAT, FakeSleep, FakeTgCalls, RecordingEvents
from tgstream.adapters.feeds import Unit
from tgstream.adapters.telegram_session import check_telegram
from tgstream.adapters.tgcalls import TelegramOutput, build_telegram_output
from tgstream.config import QUALITY_PRESETS, Quality, Settings
from tgstream.errors import OutputError, SessionError

API_HASH = "0123456789abcdef0123456789abcdef"
AUDIO_UNIT = 48_000 * 2 * 2 // 30  # 1/30 s of s16le stereo: 6400 bytes
CHUNK = 1920  # 10 ms


async def until(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def make(
    fake: FakeTgCalls,
    quality: Quality = QUALITY_PRESETS["360p"],
    poll_interval: float = 60.0,
) -> tuple[TelegramOutput, RecordingEvents, FakeSleep]:
    events, sleep = RecordingEvents(), FakeSleep()
    out = TelegramOutput(fake, CHAT, quality, events, sleep=sleep, poll_interval=poll_interval)
    return out, events, sleep


def unit(quality: Quality, n: int = 0) -> Unit:
    frame = bytes([n % 256]) * quality.frame_bytes if quality.has_video else b""
    return Unit(n / 30, 1 / 30, frame, os.urandom(AUDIO_UNIT))


# -- joining ---------------------------------------------------------------------------------


async def test_open_joins_with_external_audio_and_video_at_the_quality_size() -> None:
    fake = FakeTgCalls()
    out, _, _ = make(fake, QUALITY_PRESETS["720p"])
    await out.open()
    try:
        assert fake.started == 1
        assert out.joined
        [(chat, stream, config)] = fake.plays
        assert chat == CHAT
        assert config.auto_start is True
        assert stream.camera is not None
        assert stream.camera.media_source == MediaSource.EXTERNAL
        params = stream.camera.parameters
        assert (params.width, params.height, params.frame_rate) == (1280, 720, 30)
        assert stream.microphone is not None
        assert stream.microphone.media_source == MediaSource.EXTERNAL
        assert (stream.microphone.parameters.bitrate, stream.microphone.parameters.channels) == (
            48_000,
            2,
        )
    finally:
        await out.close()


async def test_audio_quality_joins_without_a_camera() -> None:
    fake = FakeTgCalls()
    out, _, _ = make(fake, QUALITY_PRESETS["audio"])
    await out.open()
    try:
        [(_, stream, _)] = fake.plays
        assert stream.camera is None
        assert stream.microphone is not None
        assert stream.microphone.media_source == MediaSource.EXTERNAL
    finally:
        await out.close()


async def test_floodwait_on_join_is_waited_out_then_joins(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTgCalls()
    fake.play_errors = [FloodWait(value=3)]
    out, events, sleep = make(fake)
    with caplog.at_level(logging.WARNING):
        await out.open()
        await until(lambda: out.joined)
    try:
        assert sleep.waits == [3]
        assert len(fake.plays) == 2
        assert events.reconnects == 0, "the first join is not a reconnect"
        assert any(
            r.levelno == logging.WARNING
            and "FloodWait" in r.getMessage()
            and "3s" in r.getMessage()
            for r in caplog.records
        ), caplog.text
    finally:
        await out.close()


async def test_no_video_chat_and_no_right_to_start_one_is_an_error_retried_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTgCalls()
    fake.play_errors = [NoActiveGroupCall(), ChatAdminRequired(), NoActiveGroupCall()]
    out, _, sleep = make(fake)
    with caplog.at_level(logging.WARNING):
        await out.open()  # must not raise: someone may start the video chat later
        await until(lambda: out.joined)
    try:
        assert sleep.waits == [1, 2, 4]
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 3, errors
        assert all("start video chats in CHAT_ID" in m and str(CHAT) in m for m in errors)
    finally:
        await out.close()


async def test_a_session_refused_on_join_is_reported_once_and_not_retried() -> None:
    fake = FakeTgCalls()
    fake.play_errors = [SessionRevoked()]
    dead: list[str] = []
    out = TelegramOutput(
        fake, CHAT, QUALITY_PRESETS["360p"], sleep=FakeSleep(), on_session_dead=dead.append
    )
    await out.open()
    try:
        await until(lambda: bool(dead))
        assert dead == ["SESSION_REVOKED"]
        assert len(fake.plays) == 1  # no rejoin can help a dead session
        assert not out.joined
    finally:
        await out.close()


async def test_a_session_revoked_mid_stream_stops_sending_and_reports_it() -> None:
    fake = FakeTgCalls()
    dead: list[str] = []
    quality = QUALITY_PRESETS["360p"]
    out = TelegramOutput(fake, CHAT, quality, sleep=FakeSleep(), on_session_dead=dead.append)
    await out.open()
    try:
        await out.write(unit(quality, 0))
        sent = len(fake.frames)
        fake.send_error = AuthKeyUnregistered()
        for n in range(1, 4):
            await out.write(unit(quality, n))
        assert dead == ["AUTH_KEY_UNREGISTERED"]
        assert out.session_dead == "AUTH_KEY_UNREGISTERED"
        assert len(fake.frames) == sent
        assert len(fake.plays) == 1  # no rejoin attempt
    finally:
        await out.close()


async def test_open_refuses_a_rejected_session_with_the_way_out() -> None:
    fake = FakeTgCalls()
    fake.start_error = AuthKeyUnregistered()
    out, _, _ = make(fake)
    with pytest.raises(SessionError, match=r"auto_session_runner\.py --write-env") as err:
        await out.open()
    assert err.value.cause == "AUTH_KEY_UNREGISTERED"
    assert fake.plays == []


# -- sending ---------------------------------------------------------------------------------


async def test_audio_is_recut_into_10ms_chunks_without_losing_a_byte() -> None:
    fake = FakeTgCalls()
    quality = QUALITY_PRESETS["audio"]
    out, _, _ = make(fake, quality)
    await out.open()
    try:
        units = [unit(quality, n) for n in range(3)]
        counts = []
        for u in units:
            assert u.data == b""
            assert len(u.audio) == 6400
            await out.write(u)
            counts.append(len(fake.sent(Device.MICROPHONE)))
        assert counts == [3, 6, 10]  # 6400 = 3 x 1920 + 640 carried over, and so on
        chunks = fake.sent(Device.MICROPHONE)
        assert all(len(data) == CHUNK for _, data, _ in chunks)
        assert b"".join(data for _, data, _ in chunks) == b"".join(u.audio for u in units)
        assert fake.sent(Device.CAMERA) == []
    finally:
        await out.close()


async def test_video_frames_reach_the_camera_with_their_size() -> None:
    fake = FakeTgCalls()
    quality = QUALITY_PRESETS["360p"]
    out, _, _ = make(fake, quality)
    await out.open()
    try:
        units = [unit(quality, n) for n in (1, 2)]
        for u in units:
            await out.write(u)
        camera = fake.sent(Device.CAMERA)
        assert [data for _, data, _ in camera] == [u.data for u in units]
        assert all((info.width, info.height) == (640, 360) for _, _, info in camera)
        assert len(camera[0][1]) == 640 * 360 * 3 // 2
    finally:
        await out.close()


# -- losing the call and coming back ---------------------------------------------------------


async def test_kicked_update_rejoins_and_counts_a_reconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTgCalls()
    out, events, _ = make(fake)
    await out.open()
    try:
        with caplog.at_level(logging.WARNING):
            await fake.kick()
            assert not out.joined
            await until(lambda: out.joined)
        assert len(fake.plays) == 2
        assert events.reconnects == 1
        assert any(
            r.levelno == logging.WARNING and "KICKED" in r.getMessage() for r in caplog.records
        ), caplog.text
        await out.write(unit(QUALITY_PRESETS["360p"]))
        assert fake.sent(Device.CAMERA), "frames flow again after the rejoin"
    finally:
        await out.close()


async def test_update_for_another_chat_or_status_is_ignored() -> None:
    fake = FakeTgCalls()
    out, events, _ = make(fake)
    await out.open()
    try:
        await fake.emit(ChatUpdate(-100999, ChatUpdate.Status.KICKED))
        await fake.emit(ChatUpdate(CHAT, ChatUpdate.Status.INVITED_VOICE_CHAT))
        await asyncio.sleep(0.02)
        assert out.joined
        assert len(fake.plays) == 1
        assert events.reconnects == 0
    finally:
        await out.close()


async def test_poller_rejoins_when_the_call_is_dropped_without_an_update() -> None:
    fake = FakeTgCalls()
    out, events, _ = make(fake, poll_interval=0.02)
    await out.open()
    try:
        fake.drop()
        await until(lambda: len(fake.plays) == 2 and out.joined)
        assert events.reconnects == 1
        assert CHAT in fake.active
    finally:
        await out.close()


async def test_not_in_call_while_sending_drops_units_and_rejoins() -> None:
    fake = FakeTgCalls()
    quality = QUALITY_PRESETS["360p"]
    out, events, _ = make(fake, quality)  # the poller is too slow to notice in this test
    await out.open()
    try:
        fake.drop()
        await out.write(unit(quality, 1))  # raises NotInCallError inside: must not escape
        assert not out.joined
        assert fake.frames == []
        await until(lambda: out.joined)
        assert events.reconnects == 1
        assert len(fake.plays) == 2
        await out.write(unit(quality, 2))
        [(_, data, _)] = fake.sent(Device.CAMERA)
        assert data == unit(quality, 2).data
        # The partial audio of the unit sent while out of the call is not replayed.
        assert len(fake.sent(Device.MICROPHONE)) == 3
    finally:
        await out.close()


async def test_units_are_dropped_while_not_joined() -> None:
    fake = FakeTgCalls()
    fake.play_errors = [NoActiveGroupCall()]
    quality = QUALITY_PRESETS["360p"]
    out = TelegramOutput(fake, CHAT, quality, sleep=lambda _s: asyncio.sleep(3600))
    await out.open()
    try:
        assert not out.joined
        started = time.monotonic()
        for n in range(30):
            await out.write(unit(quality, n))
        assert time.monotonic() - started < 0.5
        assert fake.frames == []
    finally:
        await out.close()  # also cancels the backoff wait of an hour


# -- closing ---------------------------------------------------------------------------------


async def test_close_leaves_the_call_and_stops_the_client() -> None:
    fake = FakeTgCalls()
    out, _, _ = make(fake, poll_interval=0.01)
    await out.open()
    await out.close()
    assert fake.left == [CHAT]
    assert fake.mtproto_client.stopped == 1
    assert CHAT not in fake.active
    fake.drop()  # nothing may rejoin after close
    await asyncio.sleep(0.05)
    assert len(fake.plays) == 1


async def test_close_when_already_out_of_the_call_does_not_raise() -> None:
    fake = FakeTgCalls()
    out, _, _ = make(fake)
    await out.open()
    fake.drop()
    await out.close()  # leave_call raises NotInCallError, which is ignored
    assert fake.left == []
    assert fake.mtproto_client.stopped == 1


# -- the real wiring and `tgstream check` ----------------------------------------------------


def settings(session: str = "not-a-session") -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, API_ID=1, API_HASH=API_HASH, SESSION_STRING=session, CHAT_ID=CHAT
    )


def session_string(user_id: int = 42) -> str:
    """A well-formed (but never authorised) session string, as export_session_string makes."""
    packed = struct.pack(Storage.SESSION_STRING_FORMAT, 2, 1, False, bytes(256), user_id, False)
    return base64.urlsafe_b64encode(packed).decode().rstrip("=")


async def test_build_wires_the_real_client_and_refuses_a_garbage_session_offline() -> None:
    out = build_telegram_output(settings(), None)
    assert (out.name, out.recipe) == ("telegram", "raw")
    with pytest.raises(OutputError) as err:
        await out.open()
    message = str(err.value)
    assert "auto_session_runner.py" in message
    assert "not-a-session" not in message
    assert API_HASH not in message


async def test_check_with_a_garbage_session_fails_fast_with_the_way_out() -> None:
    started = time.monotonic()
    ok, message = await check_telegram(settings("not-a-session"))
    assert time.monotonic() - started < 2.0
    assert ok is False
    assert "malformed" in message
    assert "python test/auto_session_runner.py --write-env" in message
    assert "not-a-session" not in message
    assert API_HASH not in message


async def test_check_with_a_session_without_an_account() -> None:
    ok, message = await check_telegram(settings(session_string(user_id=0)))
    assert ok is False
    assert "no logged-in account" in message
    assert "auto_session_runner.py" in message


class FakeLoginClient:
    def __init__(self, connect: Callable[[], Any], me: Any = None, error: Exception | None = None):
        self._connect = connect
        self._me = me
        self._error = error
        self.is_connected = False
        self.disconnected = 0

    async def connect(self) -> bool:
        await self._connect()
        self.is_connected = True
        return True

    async def get_me(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._me

    async def get_chat(self, chat_id: int | str) -> Any:
        return SimpleNamespace(id=chat_id, title="group")

    async def disconnect(self) -> None:
        self.disconnected += 1
        self.is_connected = False


async def test_check_reports_a_network_timeout_as_such_not_as_a_bad_session() -> None:
    client = FakeLoginClient(lambda: asyncio.sleep(3600))
    session = session_string()
    ok, message = await check_telegram(
        settings(session), timeout=0.05, client_factory=lambda _s: client
    )
    assert ok is False
    assert "no answer from Telegram within 0.05s" in message
    assert "network" in message
    assert "auto_session_runner" not in message
    assert session not in message


async def test_check_reports_an_unregistered_session_with_the_way_out() -> None:
    client = FakeLoginClient(lambda: asyncio.sleep(0), error=AuthKeyUnregistered())
    ok, message = await check_telegram(settings(session_string()), client_factory=lambda _s: client)
    assert ok is False
    assert "AUTH_KEY_UNREGISTERED" in message
    assert "python test/auto_session_runner.py --write-env" in message
    assert client.disconnected == 1


async def test_check_names_the_account_on_success() -> None:
    class Me:
        first_name = "Alice"
        id = 42

    client = FakeLoginClient(lambda: asyncio.sleep(0), me=Me())
    ok, message = await check_telegram(settings(session_string()), client_factory=lambda _s: client)
    assert (ok, message) == (True, "logged in as Alice (id 42)")
    assert client.disconnected == 1
