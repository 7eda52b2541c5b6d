"""Load shedding, end to end on SQLite and PostgreSQL: a hub running its API without its
workers accepts sends until the oldest waiting message is older than the bound
(``CHAT4ALL_SHED_OUTBOX_AGE``, 1 s here); then sends are 503 with ``Retry-After`` (gRPC
``UNAVAILABLE`` with a ``retry-after`` trailer) while reads go on, and the metrics say so. Once
the workers run, the backlog drains and sends are accepted again, by themselves."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from chat4all.bootstrap import API_ROLES, SIMULATOR_ACCOUNT, WORKER_ROLES
from chat4all.v1 import api_pb2 as pb
from chat4all.v1 import api_pb2_grpc as pb_grpc
from tests.chat4all.conftest import hub_running

from .test_rest_e2e import body


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> dict[str, str]:
    """The hub's database settings: the embedded SQLite file, then a fresh PostgreSQL one."""
    if request.param == "sqlite":
        return {}
    url: str = request.getfixturevalue("postgres_url")
    return {"DATABASE_URL": url}


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)


def sample(metrics: str, name: str) -> float | None:
    """The value of the series ``name`` (with its labels) in a scrape; ``None``: absent."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else None


async def test_sends_are_shed_while_the_workers_are_behind_and_accepted_once_they_catch_up(
    tmp_path: Path, database: dict[str, Any]
) -> None:
    settings = {"SHED_OUTBOX_AGE": 1, "RATE_PER_KEY": 0, **database}
    async with hub_running(tmp_path, roles=API_ROLES, **settings) as hub:
        assert hub.admin_key is not None
        auth = {"Authorization": f"Bearer {hub.admin_key}"}
        async with (
            httpx.AsyncClient(base_url=hub.url, headers=auth, timeout=30) as client,
            grpc.aio.insecure_channel(hub.grpc_target) as channel,
        ):
            accepted: list[str] = []
            refused: list[httpx.Response] = []

            async def send_until_refused() -> bool:
                answer = await client.post("/v1/messages", json=body(f"m{len(accepted)}"))
                if answer.status_code == 202:
                    accepted.append(answer.json()["id"])
                    return False
                refused.append(answer)
                return True

            began = time.monotonic()
            await eventually(send_until_refused, "sends refused once the workers are behind")
            assert time.monotonic() - began >= 1.0  # not before the bound
            assert accepted, "the first sends are accepted"
            answer = refused[0]
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"] == "5"
            error = answer.json()["error"]
            assert error["code"] == "overloaded"
            assert "CHAT4ALL_SHED_OUTBOX_AGE=1" in error["message"]

            # reads and other routes keep working
            assert (await client.get(f"/v1/messages/{accepted[0]}")).status_code == 200
            assert (await client.get("/v1/conversations")).status_code == 200

            stub = pb_grpc.Chat4AllServiceStub(channel)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.aio.AioRpcError) as over_grpc:
                await stub.SendMessage(
                    pb.SendMessageRequest(
                        channel="telegram",
                        account=SIMULATOR_ACCOUNT,
                        recipient="42",
                        content=pb.Content(text="over grpc"),
                    ),
                    metadata=(("authorization", f"Bearer {hub.admin_key}"),),
                    timeout=30,
                )
            assert over_grpc.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "overloaded" in (over_grpc.value.details() or "")
            trailers = dict(over_grpc.value.trailing_metadata() or ())
            assert trailers.get("retry-after") == "5"

            scraped = (await client.get("/metrics")).text
            assert sample(scraped, "chat4all_load_shedding") == 1
            assert (sample(scraped, 'chat4all_load_shed_total{reason="outbox_age"}') or 0) >= 2
            # an API-only process does not report the database-wide gauges
            assert sample(scraped, "chat4all_outbox_depth") is None

            # the workers start: a hub of their own on the same database, as `chat4all worker`
            async with hub_running(tmp_path, roles=WORKER_ROLES, **settings) as workers:

                async def drained() -> bool:
                    return await hub.store.depth() == 0

                await eventually(drained, "every accepted message delivered")

                async def accepted_again() -> bool:
                    answer = await client.post("/v1/messages", json=body("after"))
                    assert answer.status_code in (202, 503), answer.text
                    return answer.status_code == 202

                await eventually(accepted_again, "sends accepted again")
                scraped = (await client.get("/metrics")).text
                assert sample(scraped, "chat4all_load_shedding") == 0
                at_workers = (await client.get(f"{workers.url}/metrics")).text
                assert sample(at_workers, "chat4all_outbox_depth") is not None  # reported there
            for message_id in accepted:
                status = (await client.get(f"/v1/messages/{message_id}")).json()["status"]
                assert status != "queued", message_id
