"""`chat4all relay` as an operator runs it: refused without NATS, exit 3 when NATS does not
answer (its password never shown), and, with both up, it publishes the accepted messages and
stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import Content
from chat4all.ports import SendRequest
from tests.chat4all.log.conftest import stream_name


def env(data: Path, **more: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),  # this tree's code, not another's
        "CHAT4ALL_DATA_DIR": str(data),
        **more,
    }


def relay(data: Path, **more: str) -> subprocess.CompletedProcess[str]:
    """The command run to its end; its stderr with the console's line wrapping undone."""
    done = subprocess.run(
        [sys.executable, "-m", "chat4all", "relay"],
        env=env(data, **more),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    done.stderr = " ".join(done.stderr.split())
    return done


def test_the_relay_needs_nats_and_says_so(tmp_path: Path, postgres_url: str) -> None:
    none = relay(tmp_path)
    assert none.returncode == 2
    assert "CHAT4ALL_NATS_URL is empty" in none.stderr
    sqlite = relay(tmp_path, CHAT4ALL_NATS_URL="nats://127.0.0.1:4222")
    assert sqlite.returncode == 2
    assert "needs PostgreSQL" in sqlite.stderr
    down = relay(
        tmp_path,
        CHAT4ALL_DATABASE_URL=postgres_url,
        CHAT4ALL_NATS_URL="nats://relay:s3cr3t-pw@127.0.0.1:1",
    )
    assert down.returncode == 3, down.stderr
    assert "cannot connect to NATS" in down.stderr
    assert "s3cr3t-pw" not in down.stderr
    assert "Traceback" not in down.stderr


@contextlib.asynccontextmanager
async def stream_of(nats_url: str) -> AsyncIterator[str]:
    name = stream_name()
    try:
        yield name
    finally:
        nc = await nats.connect(nats_url)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(name)
        await nc.close()


@pytest.mark.timeout(90)
async def test_a_relay_process_publishes_the_outbox_and_stops_on_sigterm(
    tmp_path: Path, postgres_url: str, nats_url: str
) -> None:
    store = await SqlStore.open(postgres_url)
    try:
        for n in range(3):
            request = SendRequest("telegram", "sim-bot", str(n), Content(text=f"m{n}"))
            await store.accept("default", request, None, time.time())
    finally:
        await store.close()
    async with stream_of(nats_url) as stream:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chat4all", "relay"],
            env=env(
                tmp_path,
                CHAT4ALL_DATABASE_URL=postgres_url,
                CHAT4ALL_NATS_URL=nats_url,
                CHAT4ALL_NATS_STREAM=stream,
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            nc = await nats.connect(nats_url)
            try:
                deadline = time.monotonic() + 60
                messages = 0
                while messages < 3:
                    assert proc.poll() is None, "the relay ended"
                    assert time.monotonic() < deadline, "nothing published"
                    with contextlib.suppress(Exception):  # not created yet
                        messages = (await nc.jetstream().stream_info(stream)).state.messages
                    await asyncio.sleep(0.1)
            finally:
                await nc.close()
            proc.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.to_thread(proc.communicate, timeout=30)
            assert proc.returncode == 0, stderr
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
