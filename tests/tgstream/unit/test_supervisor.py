"""The session supervisor: exit mode, degraded mode, recovery from .env, mid-stream expiry.

The verifier is the real :class:`PyrogramVerifier` over a fake pyrogram client
(:class:`FakeTelegram`); the engine is a recording stand-in, so each test is about the
supervisor's decisions. The RTMP end-to-end test drives the real engine. The seeds' acceptance
test (exit mode, degraded mode and its 60 s cycle: FR-001, FR-010) is test/test_session_expiry.py,
on the helpers of this file.
"""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path
from typing import Any

import pytest
from pyrogram.errors import (
    ChannelPrivate,
    PeerIdInvalid,
    SessionExpired,
    SessionRevoked,
)

from opskit.envfile import update_env
from opskit.logs import setup_logging
from tests.tgstream.fakes import FakeTelegram, session_string
from tests.tgstream.login_driver import NEW_SESSION, FakeLoginClient
from tgstream.adapters.telegram_session import PyrogramVerifier, check_telegram
from tgstream.bootstrap import reload_settings
from tgstream.config import Settings, load_settings
from tgstream.domain.playlist import Item
from tgstream.errors import ExitCode
from tgstream.session_cli import regenerate
from tgstream.supervisor import Resume, Supervisor

API_HASH = "0123456789abcdef0123456789abcdef"
OLD = session_string(user_id=42, key=b"\x01" * 256)
NEW = session_string(user_id=42, key=b"\x02" * 256)
ITEM = Item("/media/red.mp4#1", "/media/red.mp4", "file", 3)


def write_env(path: Path, session: str, **extra: str) -> None:
    lines = {
        "API_ID": "1",
        "API_HASH": API_HASH,
        "SESSION_STRING": session,
        "CHAT_ID": "-100123",
        "REAUTH_INTERVAL": "0.05",
        "SESSION_CHECK_INTERVAL": "0.05",
        **extra,
    }
    path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    path.chmod(0o600)


class Engines:
    """Records each engine the supervisor makes; each runs until paused or stopped."""

    def __init__(self) -> None:
        self.made: list[tuple[str, Resume | None]] = []
        self.callbacks: list[Any] = []
        self.running = asyncio.Event()

    def __call__(self, settings: Settings, on_dead: Any, resume: Resume | None) -> Any:
        session = settings.SESSION_STRING
        self.made.append((session.get_secret_value() if session else "", resume))
        self.callbacks.append(on_dead)
        engines = self

        class Engine:
            interrupted: Resume | None = None

            @property
            def resume_point(self) -> Resume | None:
                return self.interrupted or resume

            async def run(self, stop: asyncio.Event) -> ExitCode:
                engines.running.set()
                await stop.wait()
                engines.running.clear()
                self.interrupted = (ITEM, 12.5)
                return ExitCode.OK

        return Engine()


def supervisor(env: Path, telegram: FakeTelegram, engines: Engines, **kw: Any) -> Supervisor:
    settings = load_settings(env)
    verifier = PyrogramVerifier(timeout=0.2, client_factory=telegram.client)
    return Supervisor(settings, engines, verifier=verifier, reload=lambda: load_settings(env), **kw)


async def until(cond: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


async def test_a_malformed_session_is_refused_offline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = tmp_path / ".env"
    write_env(env, "garbage-garbage-garbage", SESSION_RECOVERY="exit")
    telegram = FakeTelegram()
    code = await supervisor(env, telegram, Engines()).run(asyncio.Event())
    assert code == 1
    assert telegram.logins == 0  # judged by pyrogram's parser, no connection
    assert "malformed" in caplog.text
    assert "garbage-garbage-garbage" not in caplog.text


async def test_the_output_reporting_a_dead_session_pauses_at_once(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    write_env(env, OLD, SESSION_CHECK_INTERVAL="3600")
    telegram = FakeTelegram()
    engines = Engines()
    sup = supervisor(env, telegram, engines)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    try:
        await until(engines.running.is_set)
        telegram.revoke(OLD)
        engines.callbacks[0]("AUTH_KEY_UNREGISTERED")  # what TelegramOutput does
        await until(lambda: sup.status.degraded)
    finally:
        stop.set()
        assert await task == 0


async def test_a_network_timeout_is_retried_and_not_called_an_expired_session(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = tmp_path / ".env"
    write_env(env, OLD, SESSION_RECOVERY="exit")
    telegram = FakeTelegram()
    telegram.hanging.add(OLD)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    engines = Engines()
    sup = supervisor(env, telegram, engines, sleep=sleep)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await until(lambda: sup.status.degraded)
    stop.set()
    assert await task == 0  # exit mode exits only for a dead session, never for the network
    assert sleeps[:2] == [1.0, 2.0]  # three tries with backoff at start
    assert sup.status.session == "unreachable"
    assert "expired" not in caplog.text.lower()
    assert "Telegram unreachable (timeout)" in caplog.text


async def test_outputs_without_a_session_just_run_the_engine(tmp_path: Path) -> None:
    settings = load_settings(None, OUTPUT="preview")
    engines = Engines()
    stop = asyncio.Event()
    sup = Supervisor(settings, engines, verifier=PyrogramVerifier())
    task = asyncio.create_task(sup.run(stop))
    await until(engines.running.is_set)
    stop.set()
    assert await task == 0
    assert sup.status.session == "none"


class Scripted:
    """Answers prompts from a list, as an operator at the terminal would."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.said: list[str] = []

    def ask(self, question: str, *, secret: bool = False) -> str:
        return self.answers.pop(0)

    def say(self, text: str) -> None:
        self.said.append(text)


@pytest.mark.parametrize(
    ("answers", "code"),
    [(["+441234567890", "12345", "hunter2"], 0), (["+441234567890", "1", "2", "3"], 1)],
)
async def test_auto_regen_on_a_terminal_runs_the_helper_in_process(
    tmp_path: Path, answers: list[str], code: int
) -> None:
    env = tmp_path / ".env"
    write_env(env, OLD, AUTO_REGEN="1")
    telegram = FakeTelegram()
    telegram.revoke(OLD, SessionExpired())
    prompts = Scripted(answers)

    async def regen() -> int:
        return await regenerate(
            env, load_settings(env), prompts=prompts, client_factory=FakeLoginClient
        )

    engines = Engines()
    assert await supervisor(env, telegram, engines, regen=regen).run(asyncio.Event()) == code
    assert engines.made == []
    written = load_settings(env).SESSION_STRING
    assert written is not None
    assert written.get_secret_value() == (NEW_SESSION if code == 0 else OLD)


async def test_auto_regen_without_a_terminal_goes_degraded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = tmp_path / ".env"
    write_env(env, OLD, AUTO_REGEN="1")
    telegram = FakeTelegram()
    telegram.revoke(OLD)
    sup = supervisor(env, telegram, Engines())  # no regen: what `run` passes under systemd
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await until(lambda: sup.status.degraded)
    stop.set()
    assert await task == 0
    assert "no terminal is attached: going to degraded mode" in caplog.text


async def test_no_fault_path_logs_a_secret(tmp_path: Path) -> None:
    """Every failure the supervisor and verifier know, with known secrets, through the real
    handler and its masking filter; even an exception whose text carries the session."""
    stream = io.StringIO()
    handler = setup_logging("DEBUG", stream=stream)
    env = tmp_path / ".env"
    try:
        for session, make_error in [
            (OLD, SessionExpired),
            (OLD, lambda: ConnectionError(f"reset while sending {OLD}")),
            (OLD, lambda: RuntimeError(f"weird failure with {API_HASH} in it")),
            ("garbage-session-garbage", SessionRevoked),
        ]:
            write_env(env, session, SESSION_RECOVERY="exit")
            telegram = FakeTelegram()
            telegram.revoke(session, make_error())
            sup = supervisor(env, telegram, Engines(), sleep=_no_sleep)
            stop = asyncio.Event()
            task = asyncio.create_task(sup.run(stop))
            await asyncio.sleep(0.05)
            stop.set()
            await task
    finally:
        logging.getLogger().removeHandler(handler)
    logged = stream.getvalue()
    assert "SESSION_EXPIRED" in logged
    assert "ConnectionError" in logged
    for secret in (OLD, API_HASH, "garbage-session-garbage"):
        assert secret not in logged


async def _no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


def test_a_reload_prefers_the_file_over_an_environment_set_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # systemd's EnvironmentFile= exported the old session when the service started.
    monkeypatch.setenv("SESSION_STRING", OLD)
    env = tmp_path / ".env"
    write_env(env, OLD)
    update_env(env, {"SESSION_STRING": NEW})
    assert load_settings(env).SESSION_STRING.get_secret_value() == OLD  # type: ignore[union-attr]
    fresh = reload_settings(env).SESSION_STRING
    assert fresh is not None
    assert fresh.get_secret_value() == NEW


async def test_the_first_chat_lookup_logs_a_library_error_with_its_cause_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # py-tgcalls swallows the errors of its own first lookup of the chat; ours names them.
    env = tmp_path / ".env"
    write_env(env, OLD)
    telegram = FakeTelegram()
    telegram.chat_error = ChannelPrivate()
    engines = Engines()
    stop = asyncio.Event()
    sup = supervisor(env, telegram, engines)
    task = asyncio.create_task(sup.run(stop))
    await until(lambda: engines.running.is_set() and telegram.logins >= 4)
    stop.set()
    assert await task == 0
    assert sup.status.session == "valid"  # the session works; only the chat is a problem
    assert telegram.chat_lookups == 1
    warnings = [r.getMessage() for r in caplog.records if "CHAT_ID" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "looking up CHAT_ID=-100123 failed (CHANNEL_PRIVATE: " in warnings[0]
    assert "member" in warnings[0]


async def test_check_fails_on_a_chat_it_cannot_look_up_and_says_why(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    write_env(env, OLD)
    telegram = FakeTelegram()
    telegram.chat_error = PeerIdInvalid()
    ok, detail = await check_telegram(load_settings(env), client_factory=telegram.client)
    assert not ok
    assert detail.startswith("logged in as Alice (id 42), but looking up CHAT_ID=-100123 failed")
    assert "PEER_ID_INVALID" in detail
    telegram.chat_error = None
    assert await check_telegram(load_settings(env), client_factory=telegram.client) == (
        True,
        "logged in as Alice (id 42)",
    )


async def test_session_check_judges_the_session_alone(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    write_env(env, OLD)
    telegram = FakeTelegram()
    telegram.chat_error = PeerIdInvalid()
    ok, detail = await check_telegram(
        load_settings(env), client_factory=telegram.client, look_up_chat=False
    )
    assert (ok, detail) == (True, "logged in as Alice (id 42)")
    assert telegram.chat_lookups == 0
