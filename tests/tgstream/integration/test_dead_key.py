"""A key Telegram no longer knows, as kurigram really raises it, against a fake DC on loopback.

Telegram answers a deleted auth key with the transport error -404. kurigram raises
``AuthKeyNotFound`` for it inside its receive task: ``connect()`` still returns and ``get_me``
only times out. The verifier must call it a dead session (cause named, recovery command
given), the way the supervisor reports every dead session, and not "Telegram unreachable".
Nothing is faked on the client side: the real ``pyrogram.Client`` dials :class:`FakeDC`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from tests.tgstream.fake_dc import FakeDC
from tests.tgstream.fakes import session_string
from tests.tgstream.unit.test_supervisor import Engines, write_env
from tgstream.adapters.telegram_session import PyrogramVerifier, check_telegram
from tgstream.config import load_settings
from tgstream.session import RECOVERY_COMMAND
from tgstream.supervisor import Supervisor

SESSION = session_string(user_id=42, dc_id=2, key=b"\x07" * 256)
TIMEOUT = 40.0
"""The verifier's budget: far above kurigram's own waits (a 2 s start ping, 15 s for a call)."""


async def test_a_key_telegram_no_longer_knows_is_a_dead_session_not_a_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = tmp_path / ".env"
    write_env(env, SESSION)
    async with FakeDC("auth_key_not_found") as dc:
        verifier = PyrogramVerifier(timeout=TIMEOUT, client_factory=dc.client)
        began = time.monotonic()
        verdict = await verifier.verify(load_settings(env))
        took = time.monotonic() - began
    assert dc.errors_sent >= 1  # kurigram did reach the DC and got its -404
    assert verdict.dead, verdict
    assert verdict.cause == "AuthKeyNotFound"
    assert "-404" in verdict.detail
    assert RECOVERY_COMMAND in verdict.detail
    assert "network" not in verdict.detail
    assert took < TIMEOUT / 2, f"{took:.1f}s: it waited for the timeout"
    # The task's exception was read: asyncio has nothing "never retrieved" to log.
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_a_silent_dc_is_still_unreachable_and_not_a_dead_session(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    write_env(env, SESSION)
    async with FakeDC("silent") as dc:
        verdict = await PyrogramVerifier(timeout=4, client_factory=dc.client).verify(
            load_settings(env)
        )
    assert dc.packets >= 1
    assert verdict.kind == "unreachable", verdict
    assert verdict.cause == "timeout"


async def test_tgstream_check_reports_the_dead_key_with_the_recovery_command(
    tmp_path: Path,
) -> None:
    env = tmp_path / ".env"
    write_env(env, SESSION)
    async with FakeDC() as dc:
        ok, detail = await check_telegram(
            load_settings(env), timeout=TIMEOUT, client_factory=dc.client
        )
    assert not ok
    assert "AuthKeyNotFound" in detail and RECOVERY_COMMAND in detail


async def test_the_supervisor_reports_it_as_every_dead_session(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = tmp_path / ".env"
    write_env(env, SESSION, SESSION_RECOVERY="exit")
    engines = Engines()
    async with FakeDC() as dc:
        verifier = PyrogramVerifier(timeout=TIMEOUT, client_factory=dc.client)
        settings = load_settings(env)
        sup = Supervisor(settings, engines, verifier=verifier, reload=lambda: load_settings(env))
        code = await asyncio.wait_for(sup.run(asyncio.Event()), TIMEOUT)
    assert code == 1
    assert engines.made == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert "AuthKeyNotFound" in errors[0]
    assert RECOVERY_COMMAND in errors[0]
    assert sup.status.session == "dead"
