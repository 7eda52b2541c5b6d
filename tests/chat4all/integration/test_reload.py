"""`chat4all serve` reloads its settings on SIGHUP (`systemctl reload`): a WhatsApp account
paused by a dead token (190) resumes with the token written to its settings file, without a
restart, and its waiting message reaches the provider with the new Bearer token."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from chat4all.adapters.channels.whatsapp import WhatsAppSimulator
from chat4all.simulator.host import running_simulators
from tests.chat4all.integration.test_crash import Server

NUMBER = "106540352242922"
OLD, NEW = "EAAGdeadTOKEN0001", "EAAGfreshTOKEN0002"
USER = "16505551234"
PAUSED = re.compile(
    r'^chat4all_channel_account_paused\{account="sales",channel="whatsapp"\} (\S+)$', re.M
)
SECRET = "reload-test-app-secret"


def settings(env: Path, api_url: str, token: str) -> None:
    accounts = {"sales": {"phone_number_id": NUMBER, "access_token": token}}
    env.write_text(
        f"CHAT4ALL_WHATSAPP_ACCOUNTS={json.dumps(accounts)}\n"
        f"CHAT4ALL_WHATSAPP_API_URL={api_url}\n"
        f"CHAT4ALL_WHATSAPP_APP_SECRET={SECRET}\n"
        "CHAT4ALL_WHATSAPP_PAUSE_RETRY=0.2\n"
    )


async def eventually(
    check: Callable[[], Awaitable[bool]], server: Server, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"condition not reached in time\n{server.stderr}"
        await asyncio.sleep(0.05)


async def test_sighup_resumes_a_paused_account_with_the_token_from_the_settings_file(
    tmp_path: Path,
) -> None:
    sim = WhatsAppSimulator(numbers={OLD: NUMBER, NEW: NUMBER}, app_secret=SECRET)
    sim.expire(OLD)
    env = tmp_path / "hub.env"
    async with running_simulators({"whatsapp": sim}) as urls:
        settings(env, urls["whatsapp"], OLD)
        server = Server(tmp_path / "data", "")
        server.env = {k: v for k, v in server.env.items() if "TELEGRAM" not in k}
        if "PYTHONPATH" in os.environ:  # the code under test, not another installed copy
            server.env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        server.args = ["--env-file", str(env)]
        key = await asyncio.to_thread(server.start)
        try:
            async with httpx.AsyncClient(
                base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
            ) as client:

                async def paused(value: float) -> bool:
                    found = PAUSED.search((await client.get("/metrics")).text)
                    return found is not None and float(found.group(1)) == value

                answer = await client.post(
                    "/v1/messages",
                    json={
                        "channel": "whatsapp",
                        "account": "sales",
                        "recipient": USER,
                        "content": {"text": "after the reload"},
                    },
                )
                assert answer.status_code == 202, answer.text
                await eventually(lambda: paused(1), server)
                assert sim.sent_to(USER) == 0

                settings(env, urls["whatsapp"], NEW)
                assert server.proc is not None
                server.proc.send_signal(signal.SIGHUP)

                async def arrived() -> bool:
                    return sim.sent_to(USER) == 1

                await eventually(arrived, server)
                assert sim.sent[-1].token == NEW
                await eventually(lambda: paused(0), server)
                assert server.proc.poll() is None  # reloaded, not stopped
        finally:
            await asyncio.to_thread(server.stop)
    assert server.proc is not None and server.proc.returncode == 0, server.stderr
    assert "settings reloaded" in server.stderr
    assert OLD not in server.stderr and NEW not in server.stderr
