"""An upload over a channel's limit, end to end through a hub to the WhatsApp Cloud API
simulator: refused (422, the size, the limit, what to do) or sent as text carrying a signed,
expiring link that serves the file's bytes without a key, as the tenant's setting says unless the
send itself says otherwise (over REST and over gRPC); a hub without a public URL for media
refuses links, naming the setting."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from chat4all.adapters.channels.telegram import CHANNEL as TELEGRAM
from chat4all.adapters.channels.whatsapp import CHANNEL as WHATSAPP
from chat4all.bootstrap import SIMULATOR_ACCOUNT, Hub
from chat4all.registry import Registry
from chat4all.service_layer.media_links import LINK_PATH
from chat4all.v1 import api_pb2 as pb
from chat4all.v1 import api_pb2_grpc as pb_grpc
from tests.chat4all.channels.test_whatsapp_hub import api, simulator, until
from tests.chat4all.conftest import hub_running

SECRET = "oversize-link-secret-for-tests"
PUBLIC = "https://media.example.org"
MIB = 1024 * 1024
USER = "16505550100"
LINK = re.compile(re.escape(PUBLIC + LINK_PATH) + r"\S+")


async def upload(client: httpx.AsyncClient, data: bytes, name: str) -> str:
    answer = await client.post("/v1/media", files={"file": (name, data, "video/mp4")})
    assert answer.status_code == 201, answer.text
    assert answer.json()["kind"] == "video"
    media_id: str = answer.json()["id"]
    return media_id


def video(media_id: str, caption: str | None = None, **extra: Any) -> dict[str, Any]:
    attachment = {"media_id": media_id} | ({"caption": caption} if caption else {})
    return {
        "channel": "whatsapp",
        "account": SIMULATOR_ACCOUNT,
        "recipient": USER,
        "content": {"attachments": [attachment]},
        **extra,
    }


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with hub_running(
        tmp_path,
        channels=Registry([TELEGRAM, WHATSAPP]),
        MEDIA_LINK_SECRET=SECRET,
        MEDIA_PUBLIC_URL=PUBLIC,
        WHATSAPP_PACE_SECONDS=0.01,
        WHATSAPP_PAIR_INTERVAL=0.01,
    ) as running:
        yield running


async def test_an_oversize_video_is_refused_or_sent_as_a_link_as_the_tenant_or_the_send_says(
    hub: Hub,
) -> None:
    sim = simulator(hub)
    data = os.urandom(16 * MIB + 1)  # WhatsApp takes videos up to 16 MB
    async with api(hub) as client:
        media_id = await upload(client, data, "match.mp4")

        # the tenant's default: refused at once, saying why and what to do; nothing sent
        refused = await client.post("/v1/messages", json=video(media_id, "the match"))
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["field"] == "content.attachments[0].kind"
        assert "16777217 bytes" in error["message"]
        assert "whatsapp takes videos up to 16 MB" in error["message"]
        assert 'kind "document"' in error["message"]
        assert 'oversize "link"' in error["message"]

        # the send's own policy beats the tenant's: text with the caption and a signed link
        linked = await client.post(
            "/v1/messages", json=video(media_id, "the match", oversize="link")
        )
        assert linked.status_code == 202, linked.text
        await until(lambda: sim.sent_to(USER) == 1)
        [body] = sim.bodies(USER)
        assert body["type"] == "text"
        caption, url = body["text"]["body"].split("\n")
        assert caption == "the match"
        assert LINK.fullmatch(url)
        assert linked.json()["content"]["text"] == body["text"]["body"]
        assert linked.json()["content"]["attachments"] == []
        assert sim.uploads == {}  # the file never went to the provider

        # the link serves the file, byte for byte, to anyone holding it (no key)
        async with httpx.AsyncClient(base_url=hub.url, timeout=30) as anyone:
            fetched = await anyone.get(url.removeprefix(PUBLIC))
        assert fetched.status_code == 200
        assert hashlib.sha256(fetched.content).hexdigest() == hashlib.sha256(data).hexdigest()
        assert fetched.headers["content-type"] == "video/mp4"

        # an admin makes links the tenant's default ...
        assert (await client.get("/v1/settings")).json() == {"oversize": "reject"}
        changed = await client.patch("/v1/settings", json={"oversize": "link"})
        assert changed.status_code == 200, changed.text
        assert changed.json() == {"oversize": "link"}
        assert (await client.get("/v1/settings")).json() == {"oversize": "link"}
        [audited] = [e for e in await hub.audit.entries() if e.event == "settings_changed"]
        assert (audited.tenant, audited.detail) == ("default", "oversize reject -> link")
        assert hub.admin_key
        key_id = hub.admin_key.split("_")[1]  # (the key itself never in the output)
        assert audited.actor == key_id
        default = await client.post("/v1/messages", json=video(media_id))
        assert default.status_code == 202, default.text
        await until(lambda: sim.sent_to(USER) == 2)
        assert LINK.fullmatch(sim.bodies(USER)[1]["text"]["body"])  # no caption: the link

    # ... and a send over gRPC that says reject is refused all the same
    assert hub.admin_key
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        stub = pb_grpc.Chat4AllServiceStub(channel)
        request = pb.SendMessageRequest(
            channel="whatsapp",
            account=SIMULATOR_ACCOUNT,
            recipient=USER,
            content=pb.Content(attachments=[pb.Attachment(media_id=media_id)]),
            oversize="reject",
        )
        with pytest.raises(grpc.aio.AioRpcError) as over_grpc:
            await stub.SendMessage(
                request, metadata=(("authorization", f"Bearer {hub.admin_key}"),)
            )
    assert over_grpc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "whatsapp takes videos up to 16 MB" in str(over_grpc.value.details())
    assert sim.sent_to(USER) == 2


async def test_a_hub_without_a_public_media_url_refuses_links_naming_the_setting(
    tmp_path: Path,
) -> None:
    async with (
        hub_running(
            tmp_path, channels=Registry([TELEGRAM, WHATSAPP]), MEDIA_LINK_SECRET=SECRET
        ) as hub,
        api(hub) as client,
    ):
        media_id = await upload(client, b"\0" * (16 * MIB + 1), "big.mp4")
        refused = await client.post("/v1/messages", json=video(media_id, oversize="link"))
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["field"] == "oversize"
        assert "CHAT4ALL_MEDIA_PUBLIC_URL" in error["message"]
        assert SECRET not in refused.text
        setting = await client.patch("/v1/settings", json={"oversize": "link"})
        assert setting.status_code == 422
        assert setting.json()["error"]["field"] == "oversize"
        assert "CHAT4ALL_MEDIA_PUBLIC_URL" in setting.json()["error"]["message"]
        assert (await client.get("/v1/settings")).json() == {"oversize": "reject"}
        assert simulator(hub).sent == []
