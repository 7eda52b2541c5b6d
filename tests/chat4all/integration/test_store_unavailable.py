"""A database that cannot answer (here: SQLite locked by another writer past its busy timeout)
is a 503 with Retry-After over REST and UNAVAILABLE over gRPC, in the one error body: a caller
is told to retry, never handed a 500. Once the database answers again, so does the hub."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import pytest

from chat4all.bootstrap import SIMULATOR_ACCOUNT, Hub
from chat4all.v1 import api_pb2 as pb
from chat4all.v1 import api_pb2_grpc as pb_grpc
from tests.chat4all.conftest import hub_running

from .test_rest_e2e import body

pytestmark = pytest.mark.slow  # the hub's writers each wait out SQLite's busy timeout


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """The default hub, with a 1 s busy timeout (5 s by default): each writer queued behind
    the lock waits it out in turn."""
    async with hub_running(tmp_path, SQLITE_BUSY_MS=1000) as running:
        yield running


@contextmanager
def locked(hub: Hub) -> Iterator[None]:
    """Another process's write transaction on the hub's database file, held for the block."""
    path = hub.store.engine.url.database
    assert path
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


async def test_a_database_that_cannot_answer_is_503_and_unavailable_then_recovers(
    hub: Hub,
) -> None:
    assert hub.admin_key is not None
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    metadata = (("authorization", f"Bearer {hub.admin_key}"),)
    request = pb.SendMessageRequest(
        channel="telegram", account=SIMULATOR_ACCOUNT, recipient="42", content=pb.Content(text="x")
    )
    async with (
        httpx.AsyncClient(base_url=hub.url, headers=auth, timeout=60) as client,
        grpc.aio.insecure_channel(hub.grpc_target) as channel,
    ):
        stub = pb_grpc.Chat4AllServiceStub(channel)

        async def over_grpc() -> tuple[grpc.StatusCode, str]:
            try:
                await stub.SendMessage(request, metadata=metadata, timeout=60)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or ""
            return grpc.StatusCode.OK, ""

        with locked(hub):  # both at once: each waits out the busy timeout, behind the workers
            answer, (code, details) = await asyncio.gather(
                client.post("/v1/messages", json=body("while locked")), over_grpc()
            )
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "1"
        error = answer.json()["error"]
        assert error["code"] == "unavailable"
        assert "retry" in error["message"]
        assert code is grpc.StatusCode.UNAVAILABLE, details
        assert "retry" in details
        again = await client.post("/v1/messages", json=body("after"))
        assert again.status_code == 202, again.text
