"""The seeds' session-expiry acceptance test (tasks T011/T026; spec FR-001, FR-010, SC-001).

    python -m pytest test/test_session_expiry.py        (from the repository root)

The real :class:`~tgstream.supervisor.Supervisor` and :class:`PyrogramVerifier` run against
Telegram faked at the pyrogram client (``FakeTelegram``: it raises pyrogram's own
``SessionExpired``), with a recording stand-in for the engine and a fake clock, so the 60 s
re-authentication cycle is checked in well under a second. ``make test`` runs this file too
(pyproject's testpaths); the end-to-end variant through nginx-rtmp is
tests/tgstream/integration/test_session_e2e.py.

- FR-001: ``SessionExpired`` is caught and logged once as an ERROR naming the cause and the
  recovery command; with ``SESSION_RECOVERY=exit`` the process ends with exit code 1 (SC-001).
- FR-010: a session found invalid mid-stream puts the service in degraded mode: nothing
  streams, the WARN line ``Degraded mode; SESSION_STRING invalid; run: python
  test/auto_session_runner.py --write-env`` is logged, and every 60 s (REAUTH_INTERVAL) a
  re-authentication cycle re-reads .env and logs each try's result; a new session in .env ends
  degraded mode and the broadcast resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from pyrogram.errors import SessionExpired, SessionRevoked, UserDeactivatedBan
from tests.tgstream.fakes import FakeTelegram
from tests.tgstream.unit.test_supervisor import (
    ITEM,
    NEW,
    OLD,
    Engines,
    supervisor,
    until,
    write_env,
)

from opskit.envfile import update_env
from tgstream.session import RECOVERY_COMMAND

WARN_LINE = f"Degraded mode; SESSION_STRING invalid; run: {RECOVERY_COMMAND}"
REAUTH = 60.0


class FakeClock:
    """The supervisor's ``sleep``: waits of ``REAUTH`` seconds or more (the degraded cycle,
    the streaming session check) block until :meth:`advance`; shorter ones (the backoff
    between the tries of a cycle) pass at once. Every wait is recorded, and virtual time kept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self._pending: list[asyncio.Future[None]] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if seconds >= REAUTH:
            future = asyncio.get_running_loop().create_future()
            self._pending.append(future)
            await future
        else:
            await asyncio.sleep(0)
        self.now += seconds

    @property
    def blocked(self) -> int:
        return sum(not f.done() for f in self._pending)

    def advance(self) -> None:
        """Let every pending long wait elapse."""
        for future in self._pending:
            if not future.done():
                future.set_result(None)
        self._pending.clear()


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (SessionExpired(), "SESSION_EXPIRED"),
        (SessionRevoked(), "SESSION_REVOKED"),
        (UserDeactivatedBan(), "USER_DEACTIVATED_BAN"),
    ],
)
async def test_fr001_exit_mode_ends_with_1_and_one_error_naming_cause_and_command(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, error: Exception, cause: str
) -> None:
    env = tmp_path / ".env"
    write_env(env, OLD, SESSION_RECOVERY="exit")
    telegram = FakeTelegram()
    telegram.revoke(OLD, error)
    engines = Engines()
    code = await supervisor(env, telegram, engines).run(asyncio.Event())
    assert code == 1
    assert engines.made == []  # nothing was streamed
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert cause in errors[0]
    assert RECOVERY_COMMAND in errors[0]


async def test_fr010_expiry_mid_stream_goes_degraded_retries_every_60s_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    env = tmp_path / ".env"
    write_env(env, OLD, REAUTH_INTERVAL=str(REAUTH), SESSION_CHECK_INTERVAL=str(REAUTH))
    telegram = FakeTelegram()
    engines = Engines()
    clock = FakeClock()
    sup = supervisor(env, telegram, engines, sleep=clock.sleep)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    try:
        await until(lambda: engines.running.is_set() and clock.blocked == 1)  # streaming
        telegram.revoke(OLD, SessionExpired())
        clock.advance()  # the next session check while streaming finds it expired

        # Degraded-mode entry: the output paused, one ERROR (FR-001), the WARN line (FR-010).
        await until(lambda: sup.status.degraded and clock.blocked == 1)
        assert not engines.running.is_set()
        assert [s for s, _ in engines.made] == [OLD]  # no new streaming attempt
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, errors
        assert "SESSION_EXPIRED" in errors[0]
        assert RECOVERY_COMMAND in errors[0]
        assert _warnings(caplog) == [WARN_LINE]

        # Two re-authentication cycles, each after REAUTH_INTERVAL = 60 s.
        for cycle in (1, 2):
            started = clock.now
            clock.advance()
            await until(lambda c=cycle: len(_warnings(caplog)) == c + 1 and clock.blocked == 1)
            assert clock.now - started == REAUTH + 1.0 + 2.0  # the wait, then 3 quick tries
            tries = [m for m in caplog.messages if m.startswith("re-authentication try")]
            assert tries[-3:] == [
                f"re-authentication try {n} of 3: dead (SESSION_EXPIRED)" for n in (1, 2, 3)
            ]
            assert not engines.running.is_set()
        assert _warnings(caplog) == [WARN_LINE] * 3
        degraded_waits = clock.waits[1:]  # after the streaming check's wait
        assert degraded_waits == [REAUTH, 1.0, 2.0, REAUTH, 1.0, 2.0, REAUTH]

        # A new session in .env (what the runner writes): the next cycle recovers.
        update_env(env, {"SESSION_STRING": NEW})
        clock.advance()
        await until(engines.running.is_set)
        assert not sup.status.degraded
        assert sup.status.session == "valid"
        assert "re-authentication try 1 of 3: valid (ok)" in caplog.messages
    finally:
        stop.set()
        clock.advance()
        assert await task == 0
    assert [s for s, _ in engines.made] == [OLD, NEW]
    assert engines.made[1][1] == (ITEM, 12.5)  # resumed where it stopped
    assert OLD not in caplog.text
    assert NEW not in caplog.text


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
