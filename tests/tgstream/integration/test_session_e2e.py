"""Session expiry mid-stream under the RTMP end-to-end setup: pause, degraded, resume.

The real supervisor, engine, ffmpeg and publisher run in-process into nginx-rtmp; only Telegram
is faked, at the pyrogram client (``FakeTelegram``). The session is revoked while a long green
track plays; the output must stop, and after a new SESSION_STRING lands in .env the broadcast
must come back on its own and continue the same track near where it stopped.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from opskit.envfile import update_env
from opskit.procs import Children
from tests.tgstream.fakes import FakeTelegram, session_string
from tests.tgstream.harness import Nginx, RtmpReader
from tgstream.adapters.publisher import Publisher
from tgstream.adapters.telegram_session import PyrogramVerifier
from tgstream.bootstrap import build_supervisor
from tgstream.config import load_settings

pytestmark = [pytest.mark.rtmp, pytest.mark.slow]

OLD = session_string(user_id=42, key=b"\x01" * 256)
NEW = session_string(user_id=42, key=b"\x02" * 256)


async def test_mid_stream_expiry_pauses_the_output_and_recovery_resumes_it(
    tmp_path: Path, media: Path, rtmp: Nginx
) -> None:
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{media}/long-green.mp4\n{media}/red.mp4\n")
    env = tmp_path / ".env"
    env.write_text(
        f"API_ID=1\nAPI_HASH=0123456789abcdef0123456789abcdef\nSESSION_STRING={OLD}\n"
        f"CHAT_ID=-100123\nOUTPUT=telegram\nPLAYLIST_FILE={playlist}\nLOOP=0\n"
        "REAUTH_INTERVAL=0.5\nSESSION_CHECK_INTERVAL=0.3\n"
    )
    telegram = FakeTelegram()
    children = Children()
    supervisor = await build_supervisor(
        load_settings(env),
        children,
        env_file=env,
        verifier=PyrogramVerifier(timeout=2, client_factory=telegram.client),
        output_factory=lambda _s, _dead: Publisher(children, "rtmp", rtmp.url(), None),
    )
    stop = asyncio.Event()
    service = asyncio.create_task(supervisor.run(stop))
    first, second = RtmpReader(rtmp.url()), RtmpReader(rtmp.url())
    try:
        await asyncio.to_thread(rtmp.wait_publish, 30)
        first.start()
        while first.seconds_of("green") < 2.0:
            assert not service.done(), "the broadcast ended early"
            await asyncio.sleep(0.1)
        telegram.revoke(OLD)
        async with asyncio.timeout(15):
            while not supervisor.status.degraded:
                await asyncio.sleep(0.05)
        await asyncio.to_thread(first.stop)  # returns once the publisher hung up
        paused_at = len(first.frames)
        await asyncio.sleep(1.5)
        assert rtmp.publishes() == 1, "published again while degraded"
        assert len(first.frames) == paused_at

        update_env(env, {"SESSION_STRING": NEW})
        while rtmp.publishes() < 2:
            await asyncio.sleep(0.05)
        second.start()
        async with asyncio.timeout(60):
            assert await service == 0
    finally:
        stop.set()
        await asyncio.wait({service}, timeout=30)
        await asyncio.to_thread(second.stop)
        await children.close()
    green_before = first.seconds_of("green")
    green_after = second.seconds_of("green")
    assert [c for c in second.colors() if c in ("green", "red")] == ["green", "red"]
    # The 8 s track went on from near where it stopped, not from its start (GOP 2 s).
    assert green_before + green_after <= 8.0 + 2.5, (green_before, green_after)
    assert green_after >= 1.0
    assert not supervisor.status.degraded
