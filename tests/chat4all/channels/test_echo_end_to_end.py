"""A new channel changes no contract: the test-only "echo" channel, registered through the
registry's injection point, goes end to end over REST and gRPC (send, delivery to its
simulator, its webhook's handshake, an inbound message, a receipt) with the committed OpenAPI
document and proto as they are."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from chat4all.adapters.channels.telegram import CHANNEL as TELEGRAM
from chat4all.bootstrap import Hub
from chat4all.contracts import openapi_document
from chat4all.plugin import SIMULATOR_ACCOUNT
from chat4all.registry import Registry
from chat4all.v1 import api_pb2 as pb
from chat4all.v1 import api_pb2_grpc as pb_grpc
from tests.chat4all.channels import echo
from tests.chat4all.conftest import hub_running

ROOT = Path(__file__).resolve().parents[3]
PROTO = ROOT / "proto"


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with hub_running(tmp_path, channels=Registry([TELEGRAM, echo.CHANNEL])) as running:
        yield running


def echo_of(hub: Hub) -> echo.EchoSimulator:
    simulator = hub.channels.simulators["echo"]
    assert isinstance(simulator, echo.EchoSimulator)
    return simulator


async def until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
    return found


async def status_of(client: httpx.AsyncClient, message_id: str, status: str) -> dict[str, Any]:
    """The message once it reached ``status``."""
    deadline = time.monotonic() + 10
    while (message := (await client.get(f"/v1/messages/{message_id}")).json())["status"] != status:
        assert time.monotonic() < deadline, f"{message_id} stayed {message['status']}"
        await asyncio.sleep(0.02)
    return dict(message)


def test_the_committed_contracts_do_not_know_the_echo_channel() -> None:
    committed = json.loads((ROOT / "docs" / "chat4all-openapi.json").read_text())
    assert committed == openapi_document()
    assert "echo" not in json.dumps(committed).lower()
    assert all("echo" not in p.read_text().lower() for p in PROTO.rglob("*.proto"))


async def test_the_echo_channel_end_to_end_over_rest_and_grpc(hub: Hub) -> None:
    simulator = echo_of(hub)
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    async with httpx.AsyncClient(base_url=hub.url, headers=auth) as client:
        # out over REST, to the simulator
        body = {
            "channel": "echo",
            "account": SIMULATOR_ACCOUNT,
            "recipient": "5511999990000",
            "content": {"text": "hello echo"},
        }
        answer = await client.post("/v1/messages", json=body)
        assert answer.status_code == 202, answer.text
        message_id = answer.json()["id"]
        await until(lambda: simulator.texts("5511999990000") == ["hello echo"])
        sent = await status_of(client, message_id, "sent")
        # its limits are the plugin's
        too_long = await client.post("/v1/messages", json=body | {"content": {"text": "x" * 501}})
        assert too_long.status_code == 422
        assert too_long.json()["error"]["field"] == "content.text"

        # in: the provider's handshake, a signed message, a receipt
        webhook = f"/v1/channels/echo/{SIMULATOR_ACCOUNT}/webhook"
        verify_token = hub.channels.settings["echo"].accounts()[SIMULATOR_ACCOUNT]
        assert isinstance(verify_token, echo.EchoAccount)
        handshake = await client.get(
            webhook,
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": verify_token.verify_token.get_secret_value(),
                "hub.challenge": "1158201444",
            },
        )
        assert (handshake.status_code, handshake.text) == (200, "1158201444")
        for request in (
            simulator.webhook_request(
                SIMULATOR_ACCOUNT, simulator.user_message("5511999990000", "hi hub")
            ),
            simulator.webhook_request(
                SIMULATOR_ACCOUNT, simulator.receipt(sent["provider_message_id"], "read")
            ),
        ):
            pushed = await client.post(webhook, content=request.body, headers=dict(request.headers))
            assert pushed.status_code == 200, pushed.text
        forged = simulator.webhook_request(
            SIMULATOR_ACCOUNT, simulator.user_message("1", "x"), genuine=False
        )
        refused = await client.post(webhook, content=forged.body, headers=dict(forged.headers))
        assert refused.status_code == 401
        listed = (await client.get("/v1/channels")).json()["items"]
        assert {c["name"]: c["accounts"] for c in listed}["echo"] == [SIMULATOR_ACCOUNT]
        [conversation] = (await client.get("/v1/conversations")).json()["items"]
        assert conversation["channel"] == "echo"
        texts = (await client.get(f"/v1/conversations/{conversation['id']}/messages")).json()
        assert [m["content"]["text"] for m in texts["items"]] == ["hello echo", "hi hub"]
        await status_of(client, message_id, "read")

    # over gRPC: listed, sent, delivered, its conversation named by its string
    metadata = (("authorization", f"Bearer {hub.admin_key}"),)
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        stub = pb_grpc.Chat4AllServiceStub(channel)  # type: ignore[no-untyped-call]
        listed = await stub.ListChannels(pb.ListChannelsRequest(), metadata=metadata)
        assert {c.name: list(c.accounts) for c in listed.items}["echo"] == [SIMULATOR_ACCOUNT]
        reply = await stub.SendMessage(
            pb.SendMessageRequest(
                channel="echo",
                account=SIMULATOR_ACCOUNT,
                recipient="5511999990000",
                content=pb.Content(text="over grpc"),
            ),
            metadata=metadata,
        )
        assert reply.message.id
        await until(lambda: simulator.texts("5511999990000") == ["hello echo", "over grpc"])
        threads = await stub.ListConversations(pb.ListConversationsRequest(), metadata=metadata)
        assert [c.channel for c in threads.items] == ["echo"]
