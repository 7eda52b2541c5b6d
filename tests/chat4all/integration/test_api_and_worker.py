"""``chat4all api`` and ``chat4all worker`` as two real processes on one PostgreSQL database:
messages sent to the API process are delivered by the worker process (the API process
dispatches nothing), in order per conversation; the worker serves its probes and is the one
that reports the database-wide gauges; both stop cleanly on SIGTERM. On the embedded SQLite
database the split commands refuse to start, saying why."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from chat4all.adapters.channels.telegram import TelegramSimulator
from tests.chat4all.cluster import first_key

from .test_cli import cli
from .test_load_shedding import sample
from .test_two_processes import TOKEN, hub

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

CHATS = 4
PER_CHAT = 10


async def test_the_api_process_accepts_and_the_worker_process_delivers(
    postgres_url: str, tmp_path: Path
) -> None:
    simulator = TelegramSimulator(tokens={TOKEN})
    async with simulator.running() as api_url:
        api = hub("api", tmp_path, postgres_url, api_url, command="api", first=True)
        worker = hub("worker", tmp_path, postgres_url, api_url, command="worker")
        try:
            await asyncio.to_thread(api.start)  # the first start creates the admin key
            key = first_key(api.log)
            assert key, api.log
            await asyncio.to_thread(worker.start)
            auth = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(headers=auth, timeout=30) as client:
                for n in range(PER_CHAT):
                    for chat in range(CHATS):
                        answer = await client.post(
                            f"{api.url}/v1/messages",
                            json={
                                "channel": "telegram",
                                "account": "bot",
                                "recipient": str(chat),
                                "content": {"text": f"{chat}:{n}"},
                            },
                        )
                        assert answer.status_code == 202, answer.text
                deadline = time.monotonic() + 60
                while len(simulator.texts()) < CHATS * PER_CHAT:
                    assert time.monotonic() < deadline, (
                        f"delivered {len(simulator.texts())} of {CHATS * PER_CHAT}:\n{worker.log}"
                    )
                    await asyncio.sleep(0.05)
                for chat in range(CHATS):
                    assert simulator.texts(str(chat)) == [f"{chat}:{n}" for n in range(PER_CHAT)]

                assert (await client.get(f"{worker.url}/ready")).json()["ready"] is True
                assert (await client.get(f"{worker.url}/v1/messages")).status_code == 404
                # the provider has them all; the worker counts each once its outcome is
                # recorded, and its depth gauge follows on its next refresh
                sent = 'chat4all_dispatch_total{channel="telegram",outcome="sent"}'
                while True:
                    at_worker = (await client.get(f"{worker.url}/metrics")).text
                    counted = sample(at_worker, sent), sample(at_worker, "chat4all_outbox_depth")
                    if counted == (CHATS * PER_CHAT, 0) or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                at_api = (await client.get(f"{api.url}/metrics")).text
            assert sample(at_worker, sent) == CHATS * PER_CHAT
            assert sample(at_api, sent) is None  # the API process dispatched nothing
            assert sample(at_worker, "chat4all_outbox_depth") == 0
            assert sample(at_api, "chat4all_outbox_depth") is None
            assert sample(at_api, "chat4all_load_shedding") == 0
        finally:
            stopped = [await asyncio.to_thread(proc.stop) for proc in (api, worker)]
        assert stopped == [0, 0], api.log + worker.log
        assert "Traceback" not in api.log + worker.log


@pytest.mark.parametrize("command", ["api", "worker"])
def test_the_split_commands_refuse_the_embedded_sqlite_database(
    tmp_path: Path, command: str
) -> None:
    refused = cli(tmp_path, command)
    assert refused.returncode == 2, refused.stderr
    assert "CHAT4ALL_DATABASE_URL" in refused.stderr
    assert "chat4all serve" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "chat4all.db").exists()  # refused before anything was opened
