"""Chaos: the scale-out deployment (two ``chat4all api``, three ``chat4all worker`` and two
``chat4all relay`` processes on a private PostgreSQL, NATS JetStream and Redis) under a steady
send load, while processes are killed with SIGKILL and restarted every few seconds, NATS is
restarted twice, PostgreSQL is frozen (SIGSTOP on its whole process tree) for a few seconds and
Redis is stopped for a few seconds.

Afterwards: every accepted message reached the provider (the Telegram simulator), each
conversation's in send order; a message reached it twice only when a dispatcher took it over from
a dead worker (counted from the processes' logs); every ``sent`` status reached the client's
webhook and the SSE stream, which reconnects to either API process with ``Last-Event-ID`` and
misses nothing. The counts are printed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from chat4all.adapters.channels.telegram import TelegramSimulator
from chat4all.simulator.host import serving
from tests.chat4all.cluster import Proc, cli
from tests.postgres import server_url
from tests.services import Nats, PostgreSQL, Redis

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

TOKEN = "778:chaos-test-token"
CHATS = 24
PACE = 1.0
"""Seconds between two sends of one conversation: about 24 messages a second in all, for as
long as the faults go on."""
KILL_EVERY = 2.0
TURNS = 5
"""Kills (one every KILL_EVERY seconds, each restarted); the engines' faults come after the 1st
to the 4th."""
LEASE = 8.0
FROZEN = 3.0
"""Seconds PostgreSQL stays frozen and Redis stopped."""
DELIVERED_WITHIN = 120.0


class Hooks:
    """The client's webhook endpoint: what arrived."""

    def __init__(self) -> None:
        self.sent: set[str] = set()
        self.calls = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            event = json.loads(await request.body())  # {"type", "at", "data"}
            self.calls += 1
            if event["type"] == "message.status" and event["data"]["status"] == "sent":
                self.sent.add(event["data"]["id"])
            return Response(status_code=204)

        return app


class Follower:
    """An SSE client that reconnects to the other API process with ``Last-Event-ID`` whenever
    its stream ends."""

    def __init__(self, apis: list[Proc], key: str) -> None:
        self._apis = apis
        self._key = key
        self.last_id = ""
        self.sent: set[str] = set()
        self.events = 0
        self.reconnects = 0

    async def run(self, stop: asyncio.Event) -> None:
        turn = 0
        async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=None)) as client:
            while not stop.is_set():
                api = self._apis[turn % len(self._apis)]
                turn += 1
                headers = {"Authorization": f"Bearer {self._key}"}
                if self.last_id:
                    headers["Last-Event-ID"] = self.last_id
                with contextlib.suppress(httpx.HTTPError):
                    async with client.stream("GET", f"{api.url}/v1/events", headers=headers) as r:
                        if r.status_code == 200:
                            await self._read(r, stop)
                self.reconnects += 1
                await asyncio.sleep(0.1)

    async def _read(self, response: httpx.Response, stop: asyncio.Event) -> None:
        event_id = ""
        async for line in response.aiter_lines():
            if stop.is_set():
                return
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                self.events += 1
                if data.get("status") == "sent":
                    self.sent.add(data["id"])
                if event_id:
                    self.last_id = event_id


async def test_scale_out_delivers_everything_in_order_through_kills_and_engine_faults(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    simulator = TelegramSimulator(tokens={TOKEN}, latency=0.02)
    hooks = Hooks()
    with (  # private engines, never the machine's shared ones: these are frozen and stopped
        PostgreSQL(server_url()).server() as postgres,
        Nats.from_environment().server() as nats,
        Redis.from_environment().server() as redis,
    ):
        database_url = f"{postgres.url}/postgres"
        async with simulator.running() as api_url, serving(hooks.app()) as hook_root:
            env = {
                "PATH": os.environ["PATH"],
                "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
                "CHAT4ALL_DATABASE_URL": database_url,
                "CHAT4ALL_NATS_URL": nats.url,
                "CHAT4ALL_REDIS_URL": redis.url,
                "CHAT4ALL_PARTITIONS": "8",
                "CHAT4ALL_NATS_ACK_WAIT": "10",
                "CHAT4ALL_DATA_DIR": str(tmp_path / "data"),
                "CHAT4ALL_MEDIA_DIR": str(tmp_path / "media"),
                "CHAT4ALL_RATE_PER_KEY": "0",
                "CHAT4ALL_SIMULATORS": "false",
                "CHAT4ALL_WEBHOOK_ALLOW_PRIVATE": "true",
                "CHAT4ALL_TELEGRAM_BOTS": json.dumps({"bot": TOKEN}),
                "CHAT4ALL_TELEGRAM_API_URL": api_url,
                "CHAT4ALL_OUTBOX_LEASE": str(LEASE),
            }
            await asyncio.to_thread(cli, env, "migrate")
            key = (await asyncio.to_thread(
                cli, env, "keys", "create", "--tenant", "default", "--role", "admin"
            )).strip()  # fmt: skip
            apis = [Proc(f"api-{n}", "api", env) for n in (1, 2)]
            workers = [Proc(f"worker-{n}", "worker", env) for n in (1, 2, 3)]
            relays = [Proc(f"relay-{n}", "relay", env) for n in (1, 2)]
            procs = [*apis, *workers, *relays]
            await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
            auth = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(headers=auth, timeout=10) as client:
                made = await client.post(
                    f"{apis[0].url}/v1/subscriptions",
                    json={"url": f"{hook_root}/hook", "events": ["message.status"]},
                )
                assert made.status_code == 201, made.text

            accepted: dict[str, str] = {}  # text -> message id
            retried: Counter[str] = Counter()
            kills: Counter[str] = Counter()
            faults: list[str] = []
            restarting: set[str] = set()
            stop_faults = asyncio.Event()
            faulted = asyncio.Event()
            stop_follow = asyncio.Event()
            follower = Follower(apis, key)

            async def conversation(chat: int, client: httpx.AsyncClient) -> None:
                n = 0
                while not faulted.is_set():
                    text = f"{chat}:{n}"
                    n += 1
                    body = {"channel": "telegram", "account": "bot",
                            "recipient": str(chat), "content": {"text": text}}  # fmt: skip
                    turn = random.randrange(len(apis))
                    deadline = time.monotonic() + 90
                    while True:
                        assert time.monotonic() < deadline, f"{text} never accepted"
                        api = apis[turn % len(apis)]
                        turn += 1
                        if api.name in restarting or not api.url:
                            await asyncio.sleep(0.05)
                            continue
                        try:
                            answer = await client.post(
                                f"{api.url}/v1/messages",
                                json=body,
                                headers={"Idempotency-Key": text},  # a retry is the same send
                            )
                        except httpx.TransportError:
                            retried["transport"] += 1
                            await asyncio.sleep(0.05)
                            continue
                        if answer.status_code in (409, 429, 500, 503):
                            retried[str(answer.status_code)] += 1
                            wait = float(answer.headers.get("Retry-After", "0.2"))
                            await asyncio.sleep(min(wait, 1.0))
                            continue
                        assert answer.status_code == 202, answer.text
                        accepted[text] = answer.json()["id"]
                        break
                    await asyncio.sleep(PACE)

            async def chaos() -> None:
                """A kill every KILL_EVERY seconds; the engines' faults at set turns."""
                try:
                    turn = 0
                    while turn < TURNS and not stop_faults.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop_faults.wait(), KILL_EVERY)
                            return
                        turn += 1
                        victim = random.choice([p for p in procs if p.name not in restarting])
                        restarting.add(victim.name)
                        await asyncio.to_thread(victim.kill)
                        kills[victim.name.split("-")[0]] += 1
                        await asyncio.to_thread(victim.start)
                        restarting.discard(victim.name)
                        if turn in (1, 4):
                            await asyncio.to_thread(nats.restart)
                            faults.append(f"NATS restarted at {time.monotonic() - began:.0f} s")
                        elif turn == 2:
                            postgres.freeze()
                            try:
                                await asyncio.sleep(FROZEN)  # the fault lasts this long
                            finally:
                                postgres.thaw()
                            faults.append(f"PostgreSQL frozen {FROZEN:g} s")
                        elif turn == 3:
                            await asyncio.to_thread(redis.stop)
                            try:
                                await asyncio.sleep(FROZEN)
                            finally:
                                await asyncio.to_thread(redis.start)
                            faults.append(f"Redis stopped {FROZEN:g} s")
                finally:
                    faulted.set()  # the load ends with the faults, however they end

            try:
                following = asyncio.create_task(follower.run(stop_follow))
                chaos_task = asyncio.create_task(chaos())
                async with httpx.AsyncClient(headers=auth, timeout=10) as client:
                    await asyncio.gather(*(conversation(c, client) for c in range(CHATS)))
                await chaos_task
                assert len(faults) == 4, f"not every engine fault happened: {faults}"

                # every accepted message delivered, and its 'sent' told to both client paths
                wanted = set(accepted)
                ids = set(accepted.values())
                deadline = time.monotonic() + DELIVERED_WITHIN
                while not (
                    wanted <= set(simulator.texts()) and ids <= hooks.sent and ids <= follower.sent
                ):
                    assert time.monotonic() < deadline, (
                        f"after {DELIVERED_WITHIN:g} s: "
                        f"{len(wanted - set(simulator.texts()))} never delivered, "
                        f"{len(ids - hooks.sent)} 'sent' never at the webhook, "
                        f"{len(ids - follower.sent)} never on the SSE stream\n"
                        + "\n".join(f"--- {p.name}\n{p.tail(15)}" for p in procs)
                    )
                    await asyncio.sleep(0.2)
                stop_follow.set()
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
            finally:
                stop_faults.set()
                codes = await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs))

            delivered = simulator.texts()
            counts = Counter(delivered)
            duplicates = sum(c - 1 for c in counts.values() if c > 1)
            reclaimed = sum(p.reclaimed() for p in procs)
            out_of_order = []
            for chat in range(CHATS):
                firsts = list(dict.fromkeys(t for t in simulator.texts(str(chat))))
                sequence = [int(t.split(":")[1]) for t in firsts]
                if sequence != sorted(sequence):
                    out_of_order.append(chat)
            print(
                f"\nchaos: {len(accepted)} accepted, {len(set(delivered))} delivered "
                f"({len(delivered)} provider calls, {duplicates} duplicate(s), {reclaimed} "
                f"reclaimed from dead workers); kills {dict(kills)}; {'; '.join(faults)}; "
                f"client retries {dict(retried)}; webhook calls {hooks.calls}; SSE events "
                f"{follower.events} over {follower.reconnects} reconnects; stop codes {codes}; "
                f"{time.monotonic() - began:.0f} s"
            )
            assert len(accepted) >= CHATS * TURNS  # a steady load all along
            assert not out_of_order, f"conversations out of order: {out_of_order}"
            assert duplicates <= reclaimed, (
                f"{duplicates} duplicate(s) at the provider, only {reclaimed} message(s) taken "
                f"over from dead workers"
            )
            assert sum(kills.values()) == TURNS
            assert all(code == 0 for code in codes), codes
