"""Degraded-mode alerts through a loopback fake of the Telegram Bot API, and no secret in logs."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from pyrogram.errors import ChannelPrivate
from pytgcalls.exceptions import NoActiveGroupCall
from pytgcalls.types import GroupCallParticipant

from opskit.envfile import update_env
from opskit.logs import MASKER, setup_logging
from tests.tgstream.fakes import CHAT, FakeTelegram, FakeTgCalls
from tests.tgstream.unit.test_supervisor import (
    API_HASH,
    NEW,
    OLD,
    Engines,
    supervisor,
    until,
    write_env,
)
from tests.tgstream.unit.test_tgcalls import unit
from tgstream.adapters.alerts import BotAlerter
from tgstream.adapters.tgcalls import TelegramOutput
from tgstream.config import QUALITY_PRESETS, load_settings
from tgstream.supervisor import CallWatch

TOKEN = "123456:AAE-fake-bot-token-for-tests-0001"


class FakeBotApi:
    """``POST /bot<token>/sendMessage`` as the Bot API answers it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.url = ""

    @contextlib.contextmanager
    def serve(self) -> Iterator[FakeBotApi]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != f"/bot{TOKEN}/sendMessage":
                    status, answer = (
                        401,
                        {"ok": False, "error_code": 401, "description": "Unauthorized"},
                    )
                else:
                    api.messages.append(body)
                    status, answer = 200, {"ok": True, "result": {"message_id": len(api.messages)}}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


async def test_entering_and_leaving_degraded_mode_alerts_the_operator_through_a_bot(
    tmp_path: Path,
) -> None:
    # Logs go through the service's own handler (and its masking filter), as in production.
    stream = io.StringIO()
    handler = setup_logging("DEBUG", stream=stream)
    env = tmp_path / ".env"
    with FakeBotApi().serve() as api:
        write_env(env, OLD, ALERT_BOT_TOKEN=TOKEN, ALERT_CHAT_ID="777", ALERT_API_URL=api.url)
        settings = load_settings(env)  # registers the secrets with the masker, as `run` does
        assert settings.ALERT_BOT_TOKEN is not None
        alerter = BotAlerter(TOKEN, 777, api_url=api.url, min_interval=300)
        telegram = FakeTelegram()
        telegram.revoke(OLD)
        engines = Engines()
        sup = supervisor(env, telegram, engines, alerter=alerter)
        stop = asyncio.Event()
        task = asyncio.create_task(sup.run(stop))
        try:
            await until(lambda: len(api.messages) == 1)
            update_env(env, {"SESSION_STRING": NEW})
            await until(lambda: len(api.messages) == 2)
        finally:
            stop.set()
            assert await task == 0
            logging.getLogger().removeHandler(handler)
    logged = stream.getvalue()
    first, second = api.messages
    assert first["chat_id"] == 777
    assert "DEGRADED" in first["text"]
    assert "AUTH_KEY_UNREGISTERED" in first["text"]
    assert "auto_session_runner.py --write-env" in first["text"]
    assert "recovered" in second["text"]
    assert "Degraded mode; SESSION_STRING invalid" in logged
    for secret in (TOKEN, OLD, NEW, API_HASH):
        assert secret not in logged
    assert f"/bot***{TOKEN[-4:]}/sendMessage" in logged  # httpx's request line, masked


async def test_repeats_are_rate_limited_changes_always_sent_refusals_logged() -> None:
    with FakeBotApi().serve() as api:
        now = [0.0]
        alerter = BotAlerter(TOKEN, 1, api_url=api.url, min_interval=300, clock=lambda: now[0])
        await alerter.notify("degraded", "one")
        await alerter.notify("degraded", "two")  # the same state within 300 s: dropped
        now[0] = 60.0
        await alerter.notify("recovered", "three")
        now[0] = 120.0
        await alerter.notify("degraded", "four")  # a change: sent however recent
        now[0] = 500.0
        await alerter.notify("degraded", "five")
        assert [m["text"] for m in api.messages] == ["one", "three", "four", "five"]
        wrong = BotAlerter("999:wrong-token-wrong", 1, api_url=api.url)
        await wrong.notify("degraded", "x")  # refused: logged, never raised
        await wrong.notify("degraded", "y")  # a failed send does not use up the slot
        assert len(api.messages) == 4
    broken = BotAlerter(TOKEN, 1, api_url="http://127.0.0.1:1")  # nothing listens
    await broken.notify("degraded", "z")


async def test_a_change_raised_while_an_alert_is_in_flight_goes_out_after_it() -> None:
    """However slow the Bot API answers, the operator's last message tells the current state:
    out, back (its answer slow), out again while back is in flight: out again is a change
    from back, not a repeat of the first out, and goes out after back."""
    received: list[str] = []
    back_arrived = asyncio.Event()
    answer_back = asyncio.Event()

    async def bot_api(request: httpx.Request) -> httpx.Response:
        received.append(json.loads(request.content)["text"])
        if received[-1] == "back":
            back_arrived.set()
            await answer_back.wait()
        return httpx.Response(200, json={"ok": True, "result": {"message_id": len(received)}})

    alerter = BotAlerter(TOKEN, 1, min_interval=300, transport=httpx.MockTransport(bot_api))
    await alerter.notify("call_out", "out")
    back = asyncio.create_task(alerter.notify("call_back", "back"))
    await back_arrived.wait()
    again = asyncio.create_task(alerter.notify("call_out", "out again"))
    await asyncio.sleep(0.05)  # time for it to be sent or dropped were it not held back
    assert received == ["out", "back"]
    answer_back.set()
    await asyncio.gather(back, again)
    assert received == ["out", "back", "out again"]


def test_the_masker_knows_the_bot_token_once_settings_load(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    write_env(env, OLD, ALERT_BOT_TOKEN=TOKEN, ALERT_CHAT_ID="5")
    load_settings(env)
    assert MASKER.mask(f"url /bot{TOKEN}/x") == f"url /bot***{TOKEN[-4:]}/x"


async def test_out_of_the_video_chat_alerts_the_operator_with_the_reason_and_the_way_out() -> None:
    fake = FakeTgCalls()
    hold = asyncio.Event()

    async def sleep(_seconds: float) -> None:
        await hold.wait()  # backoff waits last until the test lets them go

    with FakeBotApi().serve() as api:
        alerter = BotAlerter(TOKEN, 777, api_url=api.url, min_interval=300)
        watch = CallWatch(CHAT, alerter, grace=0.3)
        out = TelegramOutput(
            fake, CHAT, QUALITY_PRESETS["360p"], sleep=sleep, poll_interval=0.02, call_events=watch
        )
        await out.open()
        try:
            # A dropped connection healed at once: nobody is bothered.
            fake.drop()
            await until(lambda: len(fake.plays) == 2 and out.joined)
            await asyncio.sleep(0.5)
            assert api.messages == []

            # Kicked: told at once, with what to do; told again once back.
            fake.play_errors = [ChannelPrivate()]
            await fake.kick()
            await until(lambda: len(api.messages) == 1)
            assert watch.state == "out"
            hold.set()
            await until(lambda: out.joined and len(api.messages) == 2)
            hold.clear()

            # An admin ends the video chat (ON_CALL_ENDED=wait): told, and nothing re-created.
            fake.play_errors = [NoActiveGroupCall()]
            await fake.end_call()
            await until(lambda: len(api.messages) == 3)
            assert not out.joined
            assert fake.plays[-1][2].auto_start is False
        finally:
            hold.set()
            await out.close()
            await watch.drain()
    kicked, back, ended = (m["text"] for m in api.messages)
    assert all(m["chat_id"] == 777 for m in api.messages)
    assert "OUT OF THE VIDEO CHAT" in kicked and "viewers get nothing" in kicked
    assert f"CHAT_ID={CHAT}" in kicked
    assert "kicked" in kicked and "add it back" in kicked
    assert "back in the video chat" in back
    assert "OUT OF THE VIDEO CHAT" in ended and "call_ended" in ended
    assert "ON_CALL_ENDED=wait" in ended and "start a video chat" in ended


async def test_a_lasting_drop_is_alerted_after_the_grace_and_muting_at_once() -> None:
    fake = FakeTgCalls()
    with FakeBotApi().serve() as api:
        watch = CallWatch(CHAT, BotAlerter(TOKEN, 5, api_url=api.url), grace=0.2)
        out = TelegramOutput(
            fake,
            CHAT,
            QUALITY_PRESETS["360p"],
            sleep=lambda _s: asyncio.sleep(3600),
            call_events=watch,
        )
        await out.open()
        try:
            await fake.participant(GroupCallParticipant.Action.UPDATED, muted_by_admin=True)
            await until(lambda: len(api.messages) == 1)
            await fake.participant(GroupCallParticipant.Action.UPDATED, muted_by_admin=False)
            await until(lambda: len(api.messages) == 2)
            fake.play_errors = [TimeoutError()]  # the rejoin fails, then waits an hour
            fake.drop()
            await out.write(unit(QUALITY_PRESETS["360p"], 1))  # NotInCallError: out, dropped
            await asyncio.sleep(0.05)
            assert len(api.messages) == 2, "not before the grace"
            await until(lambda: len(api.messages) == 3)
        finally:
            await out.close()
            await watch.drain()
    muted, unmuted, dropped = (m["text"] for m in api.messages)
    assert "MUTED BY AN ADMIN" in muted and "allow it to speak" in muted
    assert "back in the video chat" in unmuted
    assert "OUT OF THE VIDEO CHAT" in dropped and "timeout" in dropped
