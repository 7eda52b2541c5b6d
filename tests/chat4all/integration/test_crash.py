"""At-least-once across kill -9: a burst into `chat4all serve`, the server killed mid-burst and
started again on the same database; every accepted message reaches the provider, in send order
within each conversation, and a duplicate happens only for what was in flight at the kill."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from chat4all.adapters.channels.telegram.simulator import TelegramSimulator
from tests.services import free_port

pytestmark = pytest.mark.slow
TOKEN = "555:crash-test-token"
CHATS = ("1", "2", "3")
PER_CHAT = 40


class Server:
    def __init__(self, data: Path, api_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "PATH": os.environ["PATH"],
            "CHAT4ALL_DATA_DIR": str(data),
            "CHAT4ALL_PORT": str(self.port),
            "CHAT4ALL_GRPC_PORT": str(free_port()),
            "CHAT4ALL_RATE_PER_KEY": "0",  # a burst from one key, on purpose
            "CHAT4ALL_TELEGRAM_BOTS": json.dumps({"bot": TOKEN}),
            "CHAT4ALL_TELEGRAM_API_URL": api_url,
            # the default lease (30 s): the restart takes the killed run's rows back at once,
            # since their holder's pid no longer runs on this host
        }
        self.args: list[str] = []
        """More arguments for ``chat4all serve`` (``--env-file``)."""
        self.proc: subprocess.Popen[str] | None = None
        self.stderr = ""

    def start(self, expect_key: bool = True) -> str:
        """Start the server; returns the admin key it prints on first start ("" later)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chat4all", "serve", *self.args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = threading.Event()
        key: list[str] = []
        threading.Thread(
            target=self._drain, args=(self.proc, ready, key, expect_key), daemon=True
        ).start()
        assert ready.wait(30), self.stderr
        return key[0] if key else ""

    def _drain(
        self, proc: subprocess.Popen[str], ready: threading.Event, key: list[str], expect_key: bool
    ) -> None:
        assert proc.stderr is not None
        with proc.stderr:
            for line in proc.stderr:
                self.stderr += line
                if found := re.search(r"(c4a_[A-Za-z0-9_-]+)", line):
                    key.append(found.group(1))
                    ready.set()
                if "chat4all API on" in line and not expect_key:
                    ready.set()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def test_kill_9_mid_burst_loses_nothing_and_keeps_order(data: Path) -> None:
    simulator = TelegramSimulator(tokens={TOKEN}, latency=0.05)
    async with simulator.running() as api_url:
        server = Server(data, api_url)
        accepted: dict[str, str] = {}  # text -> message id
        plan = [(chat, f"{chat}:{n}") for n in range(PER_CHAT) for chat in CHATS]
        killed_at = len(plan) // 2
        try:
            key = await asyncio.to_thread(server.start)
            assert key, server.stderr
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as client:
                for index, (chat, text) in enumerate(plan):
                    if index == killed_at:
                        backlog = len(accepted) - len({s.body["text"] for s in simulator.sent})
                        await asyncio.to_thread(server.kill)
                        await asyncio.to_thread(server.start, False)
                    body = {
                        "channel": "telegram",
                        "account": "bot",
                        "recipient": chat,
                        "content": {"text": text},
                    }
                    # A client that got no answer retries with the same Idempotency-Key.
                    for _ in range(50):
                        try:
                            answer = await client.post(
                                f"{server.url}/v1/messages",
                                json=body,
                                headers={"Idempotency-Key": text},
                                timeout=5,
                            )
                        except httpx.TransportError:
                            await asyncio.sleep(0.1)
                            continue
                        assert answer.status_code == 202, answer.text
                        accepted[text] = answer.json()["id"]
                        break
            deadline = time.monotonic() + 60
            while {s.body["text"] for s in simulator.sent} != set(accepted):
                assert time.monotonic() < deadline, "not every accepted message was delivered"
                await asyncio.sleep(0.1)
        finally:
            await asyncio.to_thread(server.stop)
    assert len(accepted) == len(plan)
    assert backlog > 0, "the kill found nothing accepted and undelivered: the test proves nothing"
    duplicates = len(simulator.sent) - len(accepted)
    for chat in CHATS:
        got = simulator.texts(chat)
        collapsed = [t for i, t in enumerate(got) if i == 0 or got[i - 1] != t]
        assert collapsed == [f"{chat}:{n}" for n in range(PER_CHAT)], got
    # At most one message per conversation was in flight when the server died.
    assert duplicates <= len(CHATS)
    assert "were in flight when" in server.stderr or duplicates == 0
