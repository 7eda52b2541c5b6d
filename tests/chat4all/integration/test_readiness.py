"""``/ready`` tells the truth about every engine, in a scale-out cluster of real processes
(``chat4all api``, ``worker``, ``relay``; tests/chat4all/cluster.py) on private NATS and Redis
servers that the test stops and starts again:

- NATS away: the worker and the relay are not ready (503, the body naming ``nats``), the API
  stays ready (it accepts into the outbox in PostgreSQL) and says it is degraded;
- Redis away: every process stays ready (the rate limits fall back to each process), degraded;
- ``/health`` answers 200 throughout (liveness restarts nothing for an engine's outage);
- each comes back by itself once its engine does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from tests.chat4all.cluster import Proc
from tests.chat4all.log.conftest import stream_name
from tests.services import Nats, PrivateServer, Redis

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

WITHIN = 60.0
"""Seconds a process has to see an engine go or come back (a busy machine's worth)."""


@pytest.fixture
def nats_server() -> Any:
    with Nats.from_environment().server() as server:  # this test's own: it is stopped
        yield server


@pytest.fixture
def redis_server() -> Any:
    with Redis.from_environment().server() as server:  # this test's own: it is stopped
        yield server


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path, database_url: str, nats_url: str, redis_url: str
) -> AsyncIterator[dict[str, Proc]]:
    stream = stream_name()
    env = {
        "PATH": os.environ["PATH"],
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},  # this tree's code
        "CHAT4ALL_DATABASE_URL": database_url,
        "CHAT4ALL_NATS_URL": nats_url,
        "CHAT4ALL_NATS_STREAM": stream,
        "CHAT4ALL_REDIS_URL": redis_url,
        "CHAT4ALL_MEDIA_DIR": str(tmp_path / "media"),
        "CHAT4ALL_SIMULATORS": "false",
    }
    procs = {
        name: Proc(name, name, {**env, "CHAT4ALL_DATA_DIR": str(tmp_path / name)})
        for name in ("api", "worker", "relay")
    }
    try:
        for proc in procs.values():  # the API first: it migrates the empty database
            await asyncio.to_thread(proc.start)
        yield procs
    finally:
        codes = {name: await asyncio.to_thread(p.stop) for name, p in procs.items()}
        with contextlib.suppress(Exception):
            nc = await nats.connect(nats_url)
            with contextlib.suppress(Exception):
                await nc.jetstream().delete_stream(stream)
            await nc.close()
    logs = "".join(p.log for p in procs.values())
    assert codes == {"api": 0, "worker": 0, "relay": 0}, logs
    assert "Traceback" not in logs, logs


async def until(
    client: httpx.AsyncClient,
    procs: dict[str, Proc],
    wanted: Callable[[dict[str, tuple[int, dict[str, Any]]]], bool],
    what: str,
) -> dict[str, tuple[int, dict[str, Any]]]:
    """Every process's ``/ready`` (status, body), asked until ``wanted`` holds of them."""
    deadline = time.monotonic() + WITHIN
    while True:
        seen = {}
        for name, proc in procs.items():
            answer = await client.get(f"{proc.url}/ready")
            seen[name] = (answer.status_code, answer.json())
        if wanted(seen):
            return seen
        assert time.monotonic() < deadline, f"not {what} within {WITHIN:g} s: {seen}"
        await asyncio.sleep(0.1)


def all_ready(seen: dict[str, tuple[int, dict[str, Any]]]) -> bool:
    return all(status == 200 and not body["degraded"] for status, body in seen.values())


async def test_ready_names_the_engine_that_is_away_and_health_stays_up(
    tmp_path: Path, postgres_url: str, nats_server: PrivateServer, redis_server: PrivateServer
) -> None:
    async with (
        cluster(tmp_path, postgres_url, nats_server.url, redis_server.url) as procs,
        httpx.AsyncClient(timeout=10) as client,
    ):
        seen = await until(client, procs, all_ready, "ready")
        required = {name: body["checks"] for name, (_, body) in seen.items()}
        assert {n: c["required"] for n, c in required["api"].items()} == {
            "database": True,
            "tasks": True,
            "nats": False,  # the API accepts into the outbox; NATS only carries its wake-ups
            "redis": False,  # the rate limits fall back to each process's own
        }
        assert required["worker"]["nats"]["required"] is True
        assert required["relay"]["nats"]["required"] is True

        async def health() -> set[int]:
            return {(await client.get(f"{p.url}/health")).status_code for p in procs.values()}

        await asyncio.to_thread(nats_server.stop)
        try:
            seen = await until(
                client,
                procs,
                lambda s: s["worker"][0] == 503 and s["relay"][0] == 503,
                "the worker and the relay unready without NATS",
            )
            for name in ("worker", "relay"):
                body = seen[name][1]
                assert body["ready"] is False
                assert body["reason"].startswith("nats: "), body
                assert body["checks"]["nats"]["ok"] is False
                assert body["checks"]["database"]["ok"] is True
            status, body = seen["api"]
            assert (status, body["ready"], body["degraded"]) == (200, True, ["nats"]), body
            assert body["checks"]["nats"]["detail"]
            assert await health() == {200}
        finally:
            await asyncio.to_thread(nats_server.start)
        await until(client, procs, all_ready, "ready again once NATS is back")

        await asyncio.to_thread(redis_server.stop)
        try:
            seen = await until(
                client,
                procs,
                lambda s: all(b["degraded"] == ["redis"] for _, b in s.values()),
                "degraded without Redis",
            )
            assert {name: status for name, (status, _) in seen.items()} == {
                "api": 200,
                "worker": 200,
                "relay": 200,
            }
            assert seen["api"][1]["checks"]["redis"]["ok"] is False
            assert await health() == {200}
        finally:
            await asyncio.to_thread(redis_server.start)
        await until(client, procs, all_ready, "no longer degraded once Redis is back")
