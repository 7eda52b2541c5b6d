"""A key of one tenant can never read or change another tenant's data: every secured operation
of the OpenAPI document is tried with a stranger's admin key against the owner's objects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx

from chat4all.adapters.storage.tenants import SqlTenantSettings
from chat4all.bootstrap import SIMULATOR_ACCOUNT, Hub
from chat4all.domain.access import Role
from chat4all.domain.model import Oversize
from tests.chat4all.channels.telegram_hub import telegram_of
from tests.chat4all.conftest import live_events

from .test_rest_e2e import body, until


async def owner_objects(hub: Hub, owner: httpx.AsyncClient) -> dict[str, str]:
    """One of everything, owned by the default tenant."""
    telegram_of(hub).blocked.add("666")
    mine = (await owner.post("/v1/messages", json=body("mine"))).json()
    dead = (await owner.post("/v1/messages", json=body("dead", recipient="666"))).json()
    subscription = (
        await owner.post(
            "/v1/subscriptions",
            json={"url": "http://127.0.0.1:9/hook", "events": ["message.status"]},
        )
    ).json()
    media = (await owner.post("/v1/media", files={"file": ("a.txt", b"owner's file")})).json()

    async def dead_listed() -> bool:
        return bool((await owner.get("/v1/dead-letters")).json()["items"])

    for _ in range(300):
        if await dead_listed():
            break
        await asyncio.sleep(0.02)
    return {
        "message": mine["id"],
        "conversation": mine["conversation_id"],
        "dead": dead["id"],
        "subscription": subscription["id"],
        "media": media["id"],
    }


async def test_every_secured_operation_keeps_tenants_apart(hub: Hub) -> None:
    assert hub.admin_key is not None
    stranger_key, _ = await hub.keys.create("tenant-b", Role.ADMIN)
    async with (
        httpx.AsyncClient(
            base_url=hub.url, headers={"Authorization": f"Bearer {hub.admin_key}"}
        ) as owner,
        httpx.AsyncClient(
            base_url=hub.url, headers={"Authorization": f"Bearer {stranger_key}"}
        ) as stranger,
    ):
        ids = await owner_objects(hub, owner)
        document = (await owner.get("/v1/openapi.json")).json()
        secured = {
            f"{method.upper()} {path}"
            for path, operations in document["paths"].items()
            for method, operation in operations.items()
            if operation.get("security")
        }

        async def send_through_owners_account() -> None:
            answer = await stranger.post("/v1/messages", json=body("not mine"))
            assert answer.status_code == 422
            assert answer.json()["error"]["field"] == "account"

        async def send_owners_media() -> None:
            with_media = body("x", attachments=[{"media_id": ids["media"]}])
            answer = await stranger.post("/v1/messages", json=with_media)
            assert answer.status_code == 422
            assert "media_id" in answer.json()["error"]["field"]

        async def get_message() -> None:
            assert (await stranger.get(f"/v1/messages/{ids['message']}")).status_code == 404

        async def list_conversations() -> None:
            assert (await stranger.get("/v1/conversations")).json()["items"] == []

        async def list_history() -> None:
            path = f"/v1/conversations/{ids['conversation']}/messages"
            assert (await stranger.get(path)).status_code == 404

        async def act_in_conversation() -> None:
            path = f"/v1/conversations/{ids['conversation']}/actions"
            before = len(telegram_of(hub).actions)
            answer = await stranger.post(path, json={"action": "typing_on"})
            assert answer.status_code == 404
            assert len(telegram_of(hub).actions) == before  # nothing reached the provider

        async def list_dead_letters() -> None:
            assert (await stranger.get("/v1/dead-letters")).json()["items"] == []

        async def replay() -> None:
            path = f"/v1/dead-letters/{ids['dead']}/replay"
            assert (await stranger.post(path)).status_code == 404

        async def subscribe() -> None:
            made = await stranger.post(
                "/v1/subscriptions",
                json={"url": "http://127.0.0.1:9/b", "events": ["message.inbound"]},
            )
            assert made.status_code == 201
            owners = (await owner.get("/v1/subscriptions")).json()["items"]
            assert [s["id"] for s in owners] == [ids["subscription"]]

        async def list_subscriptions() -> None:
            listed = (await stranger.get("/v1/subscriptions")).json()["items"]
            assert ids["subscription"] not in {s["id"] for s in listed}

        async def unsubscribe() -> None:
            path = f"/v1/subscriptions/{ids['subscription']}"
            assert (await stranger.delete(path)).status_code == 404
            owners = (await owner.get("/v1/subscriptions")).json()["items"]
            assert ids["subscription"] in {s["id"] for s in owners}

        async def list_channels() -> None:
            listed = (await stranger.get("/v1/channels")).json()["items"]
            assert listed and all(c["accounts"] == [] for c in listed)

        async def download() -> None:
            assert (await stranger.get(f"/v1/media/{ids['media']}")).status_code == 404
            assert (await owner.get(f"/v1/media/{ids['media']}")).content == b"owner's file"

        pausable = next(n for n in hub.channels.connectors if hub.channels.pausable(n))

        async def list_channel_accounts() -> None:
            path = f"/v1/channels/{pausable}/accounts"
            assert (await stranger.get(path)).json()["items"] == []
            mine = (await owner.get(path)).json()["items"]
            assert [a["name"] for a in mine] == [SIMULATOR_ACCOUNT]

        async def resume_owners_account() -> None:
            connector = hub.channels.pausable(pausable)
            assert connector is not None
            path = f"/v1/channels/{pausable}/{SIMULATOR_ACCOUNT}/resume"
            answer = await stranger.post(path, json={"access_token": "strangers-token"})
            assert answer.status_code == 404
            assert "strangers-token" not in str(vars(connector))  # nothing swapped in

        async def upload() -> None:
            made = await stranger.post("/v1/media", files={"file": ("b.txt", b"b's")})
            assert made.status_code == 201
            assert made.json()["id"] != ids["media"]

        async def resumable() -> None:
            made = await owner.post(
                "/v1/uploads", json={"size": 3, "filename": "a.txt", "mime_type": "text/plain"}
            )
            assert made.status_code == 201, made.text
            path = f"/v1/uploads/{made.json()['id']}"
            assert (await stranger.get(path)).status_code == 404
            patched = await stranger.patch(
                path,
                content=b"b's",
                headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
            )
            assert patched.status_code == 404
            assert (await stranger.post(f"{path}/complete", json={})).status_code == 404
            assert (await owner.get(path)).status_code == 200

        async def events() -> None:
            async with live_events(hub, stranger, "tenant-b") as seen:
                mine = (await owner.post("/v1/messages", json=body("while b listens"))).json()
                simulator = telegram_of(hub)
                assert simulator is not None
                await until(lambda: "while b listens" in simulator.texts("42"))
                await asyncio.sleep(0.3)  # an event for b would have arrived by now
            assert mine["id"] not in {data.get("id") for _, data in seen}

        async def settings() -> None:
            # the owner's policy, stored as an admin with media links would have set it
            await SqlTenantSettings(hub.store).set_oversize("default", Oversize.LINK, 1.0)
            assert (await stranger.get("/v1/settings")).json() == {"oversize": "reject"}
            changed = await stranger.patch("/v1/settings", json={"oversize": "reject"})
            assert changed.status_code == 200
            assert (await owner.get("/v1/settings")).json() == {"oversize": "link"}

        checks: dict[str, list[Callable[[], Awaitable[None]]]] = {
            "POST /v1/messages": [send_through_owners_account, send_owners_media],
            "GET /v1/messages/{message_id}": [get_message],
            "GET /v1/conversations": [list_conversations],
            "GET /v1/conversations/{conversation_id}/messages": [list_history],
            "POST /v1/conversations/{conversation_id}/actions": [act_in_conversation],
            "GET /v1/dead-letters": [list_dead_letters],
            "POST /v1/dead-letters/{message_id}/replay": [replay],
            "POST /v1/subscriptions": [subscribe],
            "GET /v1/subscriptions": [list_subscriptions],
            "DELETE /v1/subscriptions/{subscription_id}": [unsubscribe],
            "POST /v1/media": [upload],
            "GET /v1/media/{media_id}": [download],
            "GET /v1/events": [events],
            "GET /v1/channels": [list_channels],
            "GET /v1/channels/{channel}/accounts": [list_channel_accounts],
            "POST /v1/channels/{channel}/{account}/resume": [resume_owners_account],
            "POST /v1/uploads": [resumable],
            "GET /v1/uploads/{upload_id}": [resumable],
            "PATCH /v1/uploads/{upload_id}": [resumable],
            "POST /v1/uploads/{upload_id}/complete": [resumable],
            "GET /v1/settings": [settings],
            "PATCH /v1/settings": [settings],
        }
        assert set(checks) == secured, "a new secured route needs its cross-tenant check here"
        for operation in sorted(checks):
            for check in checks[operation]:
                await check()
        # and the owner still has it all
        assert (await owner.get(f"/v1/messages/{ids['message']}")).status_code == 200
        assert SIMULATOR_ACCOUNT in {
            c["account"] for c in (await owner.get("/v1/conversations")).json()["items"]
        }
