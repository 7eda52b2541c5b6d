"""A WhatsApp account whose token dies (190), end to end through a whole hub: it pauses (the
gauge says so), its messages wait without spending their attempts, and it resumes through the
admin API with a new token, or when its token is replaced in the settings file and reloaded
(an invalid file changes nothing)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import grpc
import httpx
import pytest

from chat4all.adapters.channels.whatsapp import CHANNEL as WHATSAPP
from chat4all.adapters.channels.whatsapp import WhatsAppConnector, WhatsAppSimulator
from chat4all.bootstrap import Hub, reload_settings
from chat4all.config import Settings, load_settings
from chat4all.registry import Registry
from chat4all.simulator.host import running_simulators
from chat4all.v1 import api_pb2 as pb
from chat4all.v1 import api_pb2_grpc as pb_grpc
from tests.chat4all.channels.test_whatsapp_hub import USER, status_of, until
from tests.chat4all.conftest import hub_running

NUMBER = "106540352242922"
OLD, NEW, RELOADED, SWAPPED = (f"EAAGtoken{n}ZZZ{n:04d}" for n in range(4))
ACCOUNT = "sales"
GAUGE = re.compile(
    r'^chat4all_channel_account_paused\{account="sales",channel="whatsapp"\} (\S+)$', re.M
)


def accounts(token: str) -> dict[str, dict[str, str]]:
    return {ACCOUNT: {"phone_number_id": NUMBER, "access_token": token}}


def send(text: str) -> dict[str, object]:
    return {"channel": "whatsapp", "account": ACCOUNT, "recipient": USER, "content": {"text": text}}


async def gauge(client: httpx.AsyncClient) -> float:
    found = GAUGE.search((await client.get("/metrics")).text)
    assert found is not None
    return float(found.group(1))


def paused_outcomes(hub: Hub) -> float:
    value = hub.metrics.registry.get_sample_value(
        "chat4all_dispatch_total", {"channel": "whatsapp", "outcome": "paused"}
    )
    return value or 0.0


async def test_a_dead_token_pauses_the_account_until_an_admin_or_a_reload_resumes_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sim = WhatsAppSimulator(
        numbers={t: NUMBER for t in (OLD, NEW, RELOADED, SWAPPED)}, app_secret="s" * 24
    )
    registry = Registry([WHATSAPP])
    async with (
        running_simulators({"whatsapp": sim}) as urls,
        hub_running(
            tmp_path,
            channels=registry,
            WHATSAPP_ACCOUNTS=accounts(OLD),
            WHATSAPP_API_URL=urls["whatsapp"],
            WHATSAPP_PAUSE_RETRY=0.2,
            MAX_ATTEMPTS=2,  # were a paused retry counted, the messages would die at once
        ) as hub,
    ):
        assert hub.admin_key is not None
        connector = hub.channels.connectors["whatsapp"]
        assert isinstance(connector, WhatsAppConnector)
        async with httpx.AsyncClient(
            base_url=hub.url, headers={"Authorization": f"Bearer {hub.admin_key}"}, timeout=10
        ) as client:
            assert await gauge(client) == 0
            # the token dies: the account pauses, its messages wait
            sim.expire(OLD)
            ids = []
            for n in range(3):
                answer = await client.post("/v1/messages", json=send(f"m{n}"))
                assert answer.status_code == 202
                ids.append(answer.json()["id"])
            await until(lambda: paused_outcomes(hub) >= 4)  # several looks, none counted
            assert await gauge(client) == 1
            for message_id in ids:
                assert (await status_of(client, message_id))["status"] == "queued"
            listed = (await client.get("/v1/channels/whatsapp/accounts")).json()["items"]
            assert [(a["name"], a["paused"]) for a in listed] == [(ACCOUNT, True)]
            assert "190" in listed[0]["reason"]
            assert sim.sent_to(USER) == 0

            # an admin resumes it with a new token: the messages go, in order, with it (the
            # first after one passing error: its attempts were not spent while it waited)
            sim.fail(131016)
            resumed = await client.post(
                f"/v1/channels/whatsapp/{ACCOUNT}/resume", json={"access_token": NEW}
            )
            assert resumed.status_code == 200, resumed.text
            assert resumed.json()["paused"] is False
            assert NEW not in resumed.text
            await until(lambda: sim.sent_to(USER) == 3)
            assert [b["text"]["body"] for b in sim.bodies(USER)] == ["m0", "m1", "m2"]
            assert {s.token for s in sim.sent} == {NEW}
            assert await gauge(client) == 0
            for message_id in ids:
                assert (await status_of(client, message_id))["status"] == "sent"

            # another tenant's or an unknown account: 404; a bad body: 422
            missing = await client.post("/v1/channels/whatsapp/nobody/resume")
            assert missing.status_code == 404
            extra = await client.post(
                f"/v1/channels/whatsapp/{ACCOUNT}/resume", json={"access_token": NEW, "x": 1}
            )
            assert extra.status_code == 422
            assert NEW not in extra.text

            # it dies again; the settings file gets a new token: a bad file changes nothing ...
            sim.expire(NEW)
            late = (await client.post("/v1/messages", json=send("m3"))).json()
            await until(lambda: bool(connector.paused()))
            # (over gRPC too)
            metadata = (("authorization", f"Bearer {hub.admin_key}"),)
            async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
                stub = pb_grpc.Chat4AllServiceStub(channel)  # type: ignore[no-untyped-call]
                listed_pb = await stub.ListChannelAccounts(
                    pb.ListChannelAccountsRequest(channel="whatsapp"), metadata=metadata
                )
                [state] = listed_pb.items
                assert (state.name, state.paused) == (ACCOUNT, True) and "190" in state.reason
                with pytest.raises(grpc.aio.AioRpcError) as missing_pb:
                    await stub.ResumeChannelAccount(
                        pb.ResumeChannelAccountRequest(channel="whatsapp", account="nobody"),
                        metadata=metadata,
                    )
                assert missing_pb.value.code() is grpc.StatusCode.NOT_FOUND
            env = tmp_path / ".env"
            env.write_text("CHAT4ALL_WHATSAPP_ACCOUNTS={not json\n")

            def load() -> Settings:
                return load_settings(env, registry, DATA_DIR=tmp_path)

            assert not await reload_settings(hub, load)
            assert "CHAT4ALL_WHATSAPP_ACCOUNTS" in caplog.text
            assert connector.paused() and connector.numbers[ACCOUNT].token == NEW
            # ... a good one resumes the account with its token, without a restart
            env.write_text(f"CHAT4ALL_WHATSAPP_ACCOUNTS={json.dumps(accounts(RELOADED))}\n")
            assert await reload_settings(hub, load)
            await until(lambda: sim.sent_to(USER) == 4)
            assert sim.sent[-1].token == RELOADED
            assert (await status_of(client, late["id"]))["status"] == "sent"
            assert await gauge(client) == 0
            # an active account's replaced token is swapped in
            env.write_text(f"CHAT4ALL_WHATSAPP_ACCOUNTS={json.dumps(accounts(SWAPPED))}\n")
            assert await reload_settings(hub, load)
            await client.post("/v1/messages", json=send("m4"))
            await until(lambda: sim.sent_to(USER) == 5)
            assert sim.sent[-1].token == SWAPPED

        events = {e.event: e.detail for e in await hub.audit.entries()}
        assert "was paused" in events["account_resumed"]
        assert "resumed with its new token" in events["account_token_reloaded"]
    for token in (OLD, NEW, RELOADED, SWAPPED):
        assert token not in caplog.text
        assert all(token not in detail for detail in events.values())
