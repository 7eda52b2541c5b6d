"""Recoveries with the REAL PyTgCalls and NTgCalls: no thread, no memory, no request left behind.

A fake has no native threads to leak, so here py-tgcalls 3 and ntgcalls are the real ones, on a
real pyrogram ``Client`` that never connects: its network methods (``start``, ``stop``,
``get_me``, ``resolve_peer``, ``invoke``) are replaced on the instance by a tiny offline
Telegram. That Telegram lets the account create a video chat and then refuses the join
(``GROUPCALL_FORBIDDEN``), so each ``play()`` goes through ntgcalls' ``create_call`` (which
starts WebRTC threads) before it fails: the path of a real refused rejoin.

Two kinds of recovery, 20 of each: the output rebuilding its clients after refused joins, and
the supervisor's (an output closed, a new one opened). Thread count and RSS are read from
/proc after a warm-up and at the end; every replaced PyTgCalls must be collectable.
"""

from __future__ import annotations

import gc
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyrogram import Client, raw
from pyrogram.errors import ChannelPrivate, GroupcallForbidden
from pytgcalls import PyTgCalls, pytgcalls_session
from pytgcalls.pytgcalls_session import PyTgCallsSession

from tests.tgstream.fakes import CHAT, ME, FakeSleep, session_string
from tests.tgstream.unit.test_tgcalls import until
from tgstream.adapters.telegram_session import make_client
from tgstream.adapters.tgcalls import TelegramOutput, build_telegram_output
from tgstream.config import QUALITY_PRESETS, Settings

RECOVERIES = 20
WARMUP = 5
MAX_THREAD_GROWTH = 2
MAX_RSS_GROWTH_KB = 16 * 1024


class Me:
    id = ME
    first_name = "Alice"


class OfflineTelegram:
    """Answers the raw requests py-tgcalls makes; counts them."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}

    def client(self, settings: Settings) -> Client:
        app: Any = make_client(settings, updates=True)
        assert isinstance(app, Client)

        async def start(*_a: Any, **_k: Any) -> Client:
            app.is_connected = True
            app.me = Me()
            return app

        async def stop(*_a: Any, **_k: Any) -> Client:
            app.is_connected = False
            return app

        async def get_me() -> Me:
            return Me()

        async def resolve_peer(peer_id: int | str) -> Any:
            if peer_id == ME:
                return raw.types.InputPeerUser(user_id=ME, access_hash=0)
            return raw.types.InputPeerChannel(channel_id=123, access_hash=1)

        async def invoke(query: Any, *_a: Any, **_k: Any) -> Any:
            name = type(query).__name__
            self.requests[name] = self.requests.get(name, 0) + 1
            if name == "CreateGroupCall":
                call = raw.types.GroupCall(
                    id=1, access_hash=2, participants_count=0, unmuted_video_limit=0, version=1
                )
                update = raw.types.UpdateGroupCall(
                    call=call, peer=raw.types.PeerChannel(channel_id=123)
                )
                return raw.types.Updates(updates=[update], users=[], chats=[], date=0, seq=0)
            if name == "JoinGroupCall":
                raise GroupcallForbidden()
            raise ChannelPrivate()  # GetFullChannel and anything else: no access

        app.start, app.stop, app.get_me = start, stop, get_me
        app.resolve_peer, app.invoke = resolve_peer, invoke
        return app


def settings() -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        API_ID=1,
        API_HASH="0123456789abcdef0123456789abcdef",
        SESSION_STRING=session_string(),
        CHAT_ID=CHAT,
    )


def rebuilt(out: TelegramOutput, n: int) -> Callable[[], bool]:
    return lambda: out.rebuilds >= n


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture
def no_github(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """py-tgcalls' version check as it would run: any HTTP session it opens is recorded."""
    opened: list[str] = []

    class Recorder:
        def __init__(self, *_a: Any, **_k: Any) -> None:
            opened.append("ClientSession")
            raise OSError("no network in tests")

    monkeypatch.setattr(pytgcalls_session, "ClientSession", Recorder)
    monkeypatch.setattr(PyTgCallsSession, "notice_displayed", False)
    return opened


async def test_twenty_recoveries_leave_threads_and_rss_flat(no_github: list[str]) -> None:
    telegram = OfflineTelegram()
    config = settings()
    build_telegram_output(config, None)  # what `tgstream run` does first: the check goes off
    made: list[weakref.ref[PyTgCalls]] = []

    def new_client() -> Any:
        calls = PyTgCalls(telegram.client(config))
        made.append(weakref.ref(calls))
        return calls

    def output() -> TelegramOutput:
        return TelegramOutput(
            new_client(),
            CHAT,
            QUALITY_PRESETS["360p"],
            sleep=FakeSleep(),
            new_client=new_client,
            rebuild_after=1,
        )

    # 1. The output rebuilds its clients after refused joins.
    out = output()
    await out.open()
    samples: dict[int, tuple[int, int]] = {}
    try:
        for n in range(1, RECOVERIES + 1):
            await until(rebuilt(out, n), timeout=60.0)
            if n in (WARMUP, RECOVERIES):
                gc.collect()
                samples[n] = (threads(), rss_kb())
    finally:
        await out.close()
    assert telegram.requests.get("JoinGroupCall", 0) >= RECOVERIES, telegram.requests
    assert not out.joined
    (t0, r0), (t1, r1) = samples[WARMUP], samples[RECOVERIES]
    print(f"rebuilds: threads {t0} -> {t1}, RSS {r0} -> {r1} kB")
    assert t1 - t0 <= MAX_THREAD_GROWTH, (t0, t1)
    assert r1 - r0 <= MAX_RSS_GROWTH_KB, (r0, r1)

    # 2. The supervisor's recovery: the output closed, a new one opened.
    for n in range(1, RECOVERIES + 1):
        out = output()
        await out.open()
        await out.close()
        if n in (WARMUP, RECOVERIES):
            gc.collect()
            samples[-n] = (threads(), rss_kb())
    (t0, r0), (t1, r1) = samples[-WARMUP], samples[-RECOVERIES]
    print(f"reopens: threads {t0} -> {t1}, RSS {r0} -> {r1} kB")
    assert t1 - t0 <= MAX_THREAD_GROWTH, (t0, t1)
    assert r1 - r0 <= MAX_RSS_GROWTH_KB, (r0, r1)

    del out  # the last output (closed) still holds its client
    gc.collect()
    alive = [ref for ref in made if ref() is not None]
    assert len(made) >= 2 * RECOVERIES
    assert alive == [], f"{len(alive)} of {len(made)} PyTgCalls still referenced"
    assert no_github == [], "py-tgcalls asked GitHub for its version"
