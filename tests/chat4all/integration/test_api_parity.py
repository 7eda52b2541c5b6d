"""One suite, two transports: every scenario runs over REST and over gRPC against the same
running hub, so the two APIs cannot drift apart."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
import httpx
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from chat4all.bootstrap import SIMULATOR_ACCOUNT, Hub
from chat4all.domain.access import Role
from chat4all.entrypoints.grpc_server import SERVICE_NAME
from chat4all.v1 import api_pb2 as pb
from chat4all.v1 import api_pb2_grpc as pb_grpc
from tests.chat4all.channels.telegram_hub import telegram_of
from tests.chat4all.conftest import hub_running


@dataclass
class Outcome:
    """A transport-neutral answer: ``error`` is the REST error code / the gRPC status name."""

    ok: bool
    error: str | None = None
    data: dict[str, Any] | None = None
    replayed: bool = False


class Client(Protocol):
    async def send(
        self,
        key: str,
        text: str,
        *,
        recipient: str = "42",
        idem: str | None = None,
        channel: str = "telegram",
        media_id: str | None = None,
    ) -> Outcome: ...

    async def upload(
        self, key: str, data: bytes, filename: str, mime_type: str | None = None
    ) -> Outcome: ...

    async def get(self, key: str, message_id: str) -> Outcome: ...

    async def history(
        self, key: str, conversation_id: str, cursor: str | None, limit: int
    ) -> Outcome: ...

    async def conversations(self, key: str, cursor: str | None, limit: int) -> Outcome: ...

    async def dead_letters(self, key: str) -> Outcome: ...

    async def replay(self, key: str, message_id: str) -> Outcome: ...

    async def subscribe(self, key: str, url: str, events: list[str]) -> Outcome: ...

    async def subscriptions(self, key: str) -> Outcome: ...

    async def unsubscribe(self, key: str, subscription_id: str) -> Outcome: ...

    async def channels(self, key: str) -> Outcome: ...

    async def send_content(self, key: str, content: dict[str, Any]) -> Outcome:
        """A send of ``content`` (written as REST takes it) to ``42`` on telegram."""
        ...

    async def act(self, key: str, conversation_id: str, action: str) -> Outcome: ...

    async def settings(self, key: str) -> Outcome: ...

    async def update_settings(self, key: str, oversize: str) -> Outcome: ...


REST_ERRORS = {
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
}


class Rest:
    def __init__(self, url: str) -> None:
        self.url = url

    async def _call(self, method: str, path: str, key: str, **kw: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url) as client:
            return await client.request(
                method,
                path,
                headers={"Authorization": f"Bearer {key}", **kw.pop("headers", {})},
                **kw,
            )

    def _outcome(self, answer: httpx.Response) -> Outcome:
        if answer.status_code < 300:
            return Outcome(
                True,
                data=answer.json() if answer.content else {},
                replayed="Idempotent-Replayed" in answer.headers,
            )
        if answer.status_code == 429:
            assert int(answer.headers["Retry-After"]) >= 1
        code = answer.json()["error"]["code"]
        named = {
            "invalid_argument": "INVALID_ARGUMENT",
            "idempotency_conflict": "FAILED_PRECONDITION",
        }
        return Outcome(False, named.get(code) or REST_ERRORS[answer.status_code], answer.json())

    async def send(
        self,
        key: str,
        text: str,
        *,
        recipient: str = "42",
        idem: str | None = None,
        channel: str = "telegram",
        media_id: str | None = None,
    ) -> Outcome:
        content: dict[str, Any] = {"text": text}
        if media_id is not None:
            content["attachments"] = [{"media_id": media_id}]
        body = {
            "channel": channel,
            "account": SIMULATOR_ACCOUNT,
            "recipient": recipient,
            "content": content,
        }
        headers = {"Idempotency-Key": idem} if idem else {}
        return self._outcome(
            await self._call("POST", "/v1/messages", key, json=body, headers=headers)
        )

    async def upload(
        self, key: str, data: bytes, filename: str, mime_type: str | None = None
    ) -> Outcome:
        part = (filename, data, mime_type) if mime_type else (filename, data)
        return self._outcome(await self._call("POST", "/v1/media", key, files={"file": part}))

    async def get(self, key: str, message_id: str) -> Outcome:
        return self._outcome(await self._call("GET", f"/v1/messages/{message_id}", key))

    async def history(
        self, key: str, conversation_id: str, cursor: str | None, limit: int
    ) -> Outcome:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        return self._outcome(
            await self._call(
                "GET", f"/v1/conversations/{conversation_id}/messages", key, params=params
            )
        )

    async def conversations(self, key: str, cursor: str | None, limit: int) -> Outcome:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        return self._outcome(await self._call("GET", "/v1/conversations", key, params=params))

    async def dead_letters(self, key: str) -> Outcome:
        return self._outcome(await self._call("GET", "/v1/dead-letters", key))

    async def replay(self, key: str, message_id: str) -> Outcome:
        return self._outcome(await self._call("POST", f"/v1/dead-letters/{message_id}/replay", key))

    async def subscribe(self, key: str, url: str, events: list[str]) -> Outcome:
        body = {"url": url, "events": events}
        return self._outcome(await self._call("POST", "/v1/subscriptions", key, json=body))

    async def subscriptions(self, key: str) -> Outcome:
        return self._outcome(await self._call("GET", "/v1/subscriptions", key))

    async def unsubscribe(self, key: str, subscription_id: str) -> Outcome:
        return self._outcome(
            await self._call("DELETE", f"/v1/subscriptions/{subscription_id}", key)
        )

    async def channels(self, key: str) -> Outcome:
        return self._outcome(await self._call("GET", "/v1/channels", key))

    async def send_content(self, key: str, content: dict[str, Any]) -> Outcome:
        body = {
            "channel": "telegram",
            "account": SIMULATOR_ACCOUNT,
            "recipient": "42",
            "content": content,
        }
        return self._outcome(await self._call("POST", "/v1/messages", key, json=body))

    async def act(self, key: str, conversation_id: str, action: str) -> Outcome:
        path = f"/v1/conversations/{conversation_id}/actions"
        return self._outcome(await self._call("POST", path, key, json={"action": action}))

    async def settings(self, key: str) -> Outcome:
        return self._outcome(await self._call("GET", "/v1/settings", key))

    async def update_settings(self, key: str, oversize: str) -> Outcome:
        body = {"oversize": oversize}
        return self._outcome(await self._call("PATCH", "/v1/settings", key, json=body))


class Grpc:
    def __init__(self, target: str) -> None:
        self.target = target

    async def _call(self, name: str, request: Any, key: str) -> Outcome:
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = pb_grpc.Chat4AllServiceStub(channel)
            try:
                reply = await getattr(stub, name)(
                    request, metadata=(("authorization", f"Bearer {key}"),)
                )
            except grpc.aio.AioRpcError as exc:
                return Outcome(False, exc.code().name, {"details": exc.details()})
        return Outcome(True, data=_reply(reply), replayed=getattr(reply, "replayed", False))

    async def send(
        self,
        key: str,
        text: str,
        *,
        recipient: str = "42",
        idem: str | None = None,
        channel: str = "telegram",
        media_id: str | None = None,
    ) -> Outcome:
        attachments = [pb.Attachment(media_id=media_id)] if media_id is not None else []
        request = pb.SendMessageRequest(
            channel=channel,
            account=SIMULATOR_ACCOUNT,
            recipient=recipient,
            content=pb.Content(text=text, attachments=attachments),
            idempotency_key=idem,
        )
        return await self._call("SendMessage", request, key)

    async def upload(
        self, key: str, data: bytes, filename: str, mime_type: str | None = None
    ) -> Outcome:
        request = pb.UploadMediaRequest(data=data, filename=filename, mime_type=mime_type)
        return await self._call("UploadMedia", request, key)

    async def get(self, key: str, message_id: str) -> Outcome:
        return await self._call("GetMessage", pb.GetMessageRequest(id=message_id), key)

    async def history(
        self, key: str, conversation_id: str, cursor: str | None, limit: int
    ) -> Outcome:
        return await self._call(
            "ListConversationMessages",
            pb.ListConversationMessagesRequest(
                conversation_id=conversation_id, cursor=cursor, limit=limit
            ),
            key,
        )

    async def conversations(self, key: str, cursor: str | None, limit: int) -> Outcome:
        return await self._call(
            "ListConversations", pb.ListConversationsRequest(cursor=cursor, limit=limit), key
        )

    async def dead_letters(self, key: str) -> Outcome:
        return await self._call("ListDeadLetters", pb.ListDeadLettersRequest(), key)

    async def replay(self, key: str, message_id: str) -> Outcome:
        request = pb.ReplayDeadLetterRequest(message_id=message_id)
        return await self._call("ReplayDeadLetter", request, key)

    async def subscribe(self, key: str, url: str, events: list[str]) -> Outcome:
        request = pb.CreateSubscriptionRequest(url=url, events=events)
        return await self._call("CreateSubscription", request, key)

    async def subscriptions(self, key: str) -> Outcome:
        return await self._call("ListSubscriptions", pb.ListSubscriptionsRequest(), key)

    async def unsubscribe(self, key: str, subscription_id: str) -> Outcome:
        request = pb.DeleteSubscriptionRequest(subscription_id=subscription_id)
        return await self._call("DeleteSubscription", request, key)

    async def channels(self, key: str) -> Outcome:
        return await self._call("ListChannels", pb.ListChannelsRequest(), key)

    async def send_content(self, key: str, content: dict[str, Any]) -> Outcome:
        written = dict(content)
        if "options" in written:  # gRPC carries each channel's options as a JSON object
            written["options"] = {k: json.dumps(v) for k, v in written["options"].items()}
        request = pb.SendMessageRequest(
            channel="telegram",
            account=SIMULATOR_ACCOUNT,
            recipient="42",
            content=json_format.ParseDict(written, pb.Content()),
        )
        return await self._call("SendMessage", request, key)

    async def act(self, key: str, conversation_id: str, action: str) -> Outcome:
        request = pb.ConversationActionRequest(conversation_id=conversation_id, action=action)
        return await self._call("ConversationAction", request, key)

    async def settings(self, key: str) -> Outcome:
        return await self._call("GetSettings", pb.GetSettingsRequest(), key)

    async def update_settings(self, key: str, oversize: str) -> Outcome:
        request = pb.UpdateSettingsRequest(oversize=oversize)
        return await self._call("UpdateSettings", request, key)


def _page(reply: Any, item: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """A paged response as REST writes it."""
    page: dict[str, Any] = {"items": [item(i) for i in reply.items]}
    if hasattr(reply, "next_cursor"):
        page["next_cursor"] = reply.next_cursor if reply.HasField("next_cursor") else None
    return page


def _subscription(s: pb.Subscription) -> dict[str, Any]:
    return {"id": s.id, "url": s.url, "events": list(s.events)}


def _reply(reply: Any) -> dict[str, Any]:
    """A gRPC response as the REST answer's data the scenarios read."""
    if isinstance(reply, pb.ListConversationsResponse):
        return _page(reply, lambda c: {"id": c.id, "account": c.account, "recipient": c.recipient})
    if isinstance(reply, pb.ListConversationMessagesResponse):
        return _page(reply, _dict)
    if isinstance(reply, pb.ListDeadLettersResponse):
        return _page(reply, lambda d: {"message": _dict(d.message), "error": d.error})
    if isinstance(reply, pb.ListSubscriptionsResponse):
        return _page(reply, _subscription)
    if isinstance(reply, pb.ListChannelsResponse):
        return _page(
            reply,
            lambda c: {
                "name": c.name,
                "accounts": list(c.accounts),
                "sends": list(c.sends),
                "attachment_kinds": list(c.attachment_kinds),
                "actions": list(c.actions),
            },
        )
    if isinstance(reply, pb.CreateSubscriptionResponse):
        return {**_subscription(reply.subscription), "secret": reply.secret}
    if isinstance(reply, pb.UploadMediaResponse):
        fields = ("id", "filename", "mime_type", "size", "sha256", "kind")
        return {f: getattr(reply.media, f) for f in fields}
    if isinstance(reply, pb.GetSettingsResponse | pb.UpdateSettingsResponse):
        return {"oversize": reply.settings.oversize}
    if isinstance(reply, pb.DeleteSubscriptionResponse | pb.ConversationActionResponse):
        return {}
    return _dict(reply.message)  # SendMessage, GetMessage, ReplayDeadLetter


def _dict(message: pb.Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "status": message.status,
        "text": message.content.text,
        "history": [e.status for e in message.history],
        # the content's later kinds, written as REST writes them
        "content": json_format.MessageToDict(message.content, preserving_proto_field_name=True),
    }


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with hub_running(tmp_path, RATE_PER_KEY=30, MEDIA_MAX_BYTES=2 * 1024 * 1024) as running:
        yield running


@pytest.fixture(params=["rest", "grpc"])
def client(request: pytest.FixtureRequest, hub: Hub) -> Client:
    return Rest(hub.url) if request.param == "rest" else Grpc(hub.grpc_target)


def text_of(outcome: Outcome) -> str:
    assert outcome.data is not None
    return str(outcome.data.get("text") or outcome.data.get("content", {}).get("text"))


async def test_send_then_get_shows_the_history(hub: Hub, client: Client) -> None:
    assert hub.admin_key
    sent = await client.send(hub.admin_key, "hello")
    assert sent.ok and sent.data is not None
    assert sent.data["status"] == "queued"
    got = await client.get(hub.admin_key, sent.data["id"])
    assert got.ok and got.data is not None
    assert text_of(got) == "hello"
    assert [h if isinstance(h, str) else h["status"] for h in got.data["history"]][:2] == [
        "accepted",
        "queued",
    ]


async def test_idempotency_replays_and_refuses_another_body(hub: Hub, client: Client) -> None:
    assert hub.admin_key
    first = await client.send(hub.admin_key, "once", idem="k-1")
    again = await client.send(hub.admin_key, "once", idem="k-1")
    other = await client.send(hub.admin_key, "twice", idem="k-1")
    assert first.ok and again.ok and again.replayed
    assert first.data and again.data and first.data["id"] == again.data["id"]
    assert (other.ok, other.error) == (False, "FAILED_PRECONDITION")


async def test_bad_input_names_the_field(hub: Hub, client: Client) -> None:
    assert hub.admin_key
    too_long = await client.send(hub.admin_key, "x" * 4097)
    no_channel = await client.send(hub.admin_key, "hi", channel="fax")
    assert (too_long.ok, too_long.error) == (False, "INVALID_ARGUMENT")
    assert "content.text" in str(too_long.data)
    assert (no_channel.ok, no_channel.error) == (False, "INVALID_ARGUMENT")
    assert "channel" in str(no_channel.data)


async def test_keys_roles_and_tenants_are_enforced(hub: Hub, client: Client) -> None:
    assert hub.admin_key
    reader, _ = await hub.keys.create("default", Role.READER)
    stranger, _ = await hub.keys.create("tenant-b", Role.ADMIN)
    mine = await client.send(hub.admin_key, "mine")
    assert mine.data
    assert (await client.send("c4a_bad_key", "x")).error == "UNAUTHENTICATED"
    assert (await client.send(reader, "x")).error == "PERMISSION_DENIED"
    assert (await client.get(reader, mine.data["id"])).ok
    assert (await client.get(stranger, mine.data["id"])).error == "NOT_FOUND"
    history = await client.history(stranger, mine.data["conversation_id"], None, 10)
    assert history.error == "NOT_FOUND"


async def test_history_pages_in_send_order(hub: Hub, client: Client) -> None:
    assert hub.admin_key
    ids = []
    for n in range(5):
        sent = await client.send(hub.admin_key, f"m{n}", recipient="7")
        assert sent.data
        ids.append(sent.data)
    conversation = ids[0]["conversation_id"]
    seen: list[str] = []
    cursor = None
    while True:
        page = await client.history(hub.admin_key, conversation, cursor, 2)
        assert page.ok and page.data is not None
        seen += [text_of(Outcome(True, data=m)) for m in page.data["items"]]
        cursor = page.data["next_cursor"]
        if not cursor:
            break
    assert seen == [f"m{n}" for n in range(5)]


async def test_grpc_serves_health_and_reflection(hub: Hub) -> None:
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for answer in stub.ServerReflectionInfo(iter([request])):
            names = {s.name for s in answer.list_services_response.service}
            break
    assert SERVICE_NAME in names
    assert "grpc.health.v1.Health" in names


async def test_a_key_over_its_rate_is_told_when_to_retry(hub: Hub, client: Client) -> None:
    key, _ = await hub.keys.create("default", Role.SENDER)
    began = time.monotonic()
    outcomes = []
    while len(outcomes) < 60 and (not outcomes or outcomes[-1].ok):
        outcomes.append(await client.send(key, f"n{len(outcomes)}", recipient="9"))
    # The bucket holds 30 and refills at 30/min: a slow machine earns a token per 2 s taken.
    earned = (time.monotonic() - began) / 2
    assert all(o.ok for o in outcomes[:30])
    assert (outcomes[-1].ok, outcomes[-1].error) == (False, "RESOURCE_EXHAUSTED")
    assert len(outcomes) - 1 <= 30 + earned + 1


async def test_an_upload_is_sent_by_its_media_id_byte_for_byte(hub: Hub, client: Client) -> None:
    assert hub.admin_key
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(300_000)
    uploaded = await client.upload(hub.admin_key, data, "dir/pic.png", "image/png")
    assert uploaded.ok and uploaded.data is not None
    media = uploaded.data
    assert str(media["id"]).startswith("md_")
    assert {k: v for k, v in media.items() if k != "id"} == {
        "filename": "pic.png",
        "mime_type": "image/png",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "kind": "image",
    }
    sent = await client.send(hub.admin_key, "look", media_id=media["id"])
    assert sent.ok, sent.data
    deadline = time.monotonic() + 10
    while not any(s.method == "sendPhoto" for s in telegram_of(hub).sent):
        assert time.monotonic() < deadline, "no sendPhoto"
        await asyncio.sleep(0.02)
    [photo] = [s for s in telegram_of(hub).sent if s.method == "sendPhoto"]
    assert photo.files["photo"].sha256 == media["sha256"]


async def test_uploads_are_refused_alike(hub: Hub, client: Client) -> None:
    assert hub.admin_key
    reader, _ = await hub.keys.create("default", Role.READER)
    stranger, _ = await hub.keys.create("tenant-b", Role.SENDER)
    empty = await client.upload(hub.admin_key, b"", "e.txt")
    too_big = await client.upload(hub.admin_key, b"x" * (2 * 1024 * 1024 + 1), "big.bin")
    assert (empty.error, too_big.error) == ("INVALID_ARGUMENT", "INVALID_ARGUMENT")
    assert "empty" in str(empty.data) and "file" in str(empty.data)
    assert "larger than 2 MB" in str(too_big.data)
    assert (await client.upload(reader, b"x", "x.txt")).error == "PERMISSION_DENIED"
    mine = await client.upload(hub.admin_key, b"x", "x.txt")
    assert mine.ok and mine.data is not None
    theirs = await client.send(stranger, "hi", media_id=mine.data["id"])
    assert theirs.error == "INVALID_ARGUMENT"
    assert "content.attachments[0].media_id" in str(theirs.data)


async def test_conversations_page_and_stay_in_their_tenant(hub: Hub, client: Client) -> None:
    assert hub.admin_key
    for recipient in ("c1", "c2", "c3"):
        assert (await client.send(hub.admin_key, "hi", recipient=recipient)).ok
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = await client.conversations(hub.admin_key, cursor, 2)
        assert page.ok and page.data is not None
        assert len(page.data["items"]) <= 2
        seen += [c["recipient"] for c in page.data["items"]]
        cursor = page.data["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == ["c1", "c2", "c3"]
    stranger, _ = await hub.keys.create("tenant-b", Role.READER)
    theirs = await client.conversations(stranger, None, 50)
    assert theirs.ok and theirs.data == {"items": [], "next_cursor": None}
    bad = await client.conversations(hub.admin_key, "!!not-a-cursor", 2)
    assert (bad.ok, bad.error) == (False, "INVALID_ARGUMENT")


@pytest.mark.parametrize(
    ("recipient", "field"),
    [("x" * 129, "recipient"), ("nul\x00byte", "recipient"), ("line\nbreak", "recipient")],
)
async def test_bounds_hold_the_same_over_both_transports(
    hub: Hub, client: Client, recipient: str, field: str
) -> None:
    assert hub.admin_key
    refused = await client.send(hub.admin_key, "x", recipient=recipient)
    assert (refused.ok, refused.error) == (False, "INVALID_ARGUMENT")
    assert field in str(refused.data)
    assert (await client.send(hub.admin_key, "fine", recipient="x" * 128)).ok


async def test_dead_letters_are_listed_and_replayed_alike(hub: Hub, client: Client) -> None:
    assert hub.admin_key
    telegram_of(hub).blocked.add("666")  # the bot is blocked there: a permanent failure
    sent = await client.send(hub.admin_key, "doomed", recipient="666")
    assert sent.ok and sent.data is not None
    deadline = time.monotonic() + 10
    while True:
        listed = await client.dead_letters(hub.admin_key)
        assert listed.ok and listed.data is not None
        if listed.data["items"]:
            break
        assert time.monotonic() < deadline, "the message never reached the dead letters"
        await asyncio.sleep(0.02)
    [dead] = listed.data["items"]
    assert dead["message"]["id"] == sent.data["id"]
    assert dead["error"]
    reader, _ = await hub.keys.create("default", Role.READER)
    stranger, _ = await hub.keys.create("tenant-b", Role.ADMIN)
    assert (await client.dead_letters(reader)).error == "PERMISSION_DENIED"
    assert (await client.replay(stranger, sent.data["id"])).error == "NOT_FOUND"
    telegram_of(hub).blocked.discard("666")
    replayed = await client.replay(hub.admin_key, sent.data["id"])
    assert replayed.ok and replayed.data is not None
    assert (replayed.data["id"], replayed.data["status"]) == (sent.data["id"], "queued")
    assert (await client.replay(hub.admin_key, sent.data["id"])).error == "NOT_FOUND"
    while "doomed" not in telegram_of(hub).texts("666"):
        assert time.monotonic() < deadline + 10, "the replayed message was not delivered"
        await asyncio.sleep(0.02)


async def test_subscriptions_are_created_listed_and_deleted_alike(hub: Hub, client: Client) -> None:
    assert hub.admin_key
    made = await client.subscribe(hub.admin_key, "http://127.0.0.1:9/hook", ["message.status"])
    assert made.ok and made.data is not None
    assert str(made.data["secret"]).startswith("whsec_")
    listed = await client.subscriptions(hub.admin_key)
    assert listed.ok and listed.data is not None
    assert [{k: s[k] for k in ("id", "url", "events")} for s in listed.data["items"]] == [
        {"id": made.data["id"], "url": "http://127.0.0.1:9/hook", "events": ["message.status"]}
    ]
    assert all("secret" not in s for s in listed.data["items"])
    bad = await client.subscribe(hub.admin_key, "http://127.0.0.1:9/hook", ["message.typo"])
    assert (bad.ok, bad.error) == (False, "INVALID_ARGUMENT")
    assert "events" in str(bad.data)
    sender, _ = await hub.keys.create("default", Role.SENDER)
    assert (await client.subscriptions(sender)).error == "PERMISSION_DENIED"
    stranger, _ = await hub.keys.create("tenant-b", Role.ADMIN)
    assert (await client.unsubscribe(stranger, made.data["id"])).error == "NOT_FOUND"
    assert (await client.unsubscribe(hub.admin_key, made.data["id"])).ok
    assert (await client.unsubscribe(hub.admin_key, made.data["id"])).error == "NOT_FOUND"
    after = await client.subscriptions(hub.admin_key)
    assert after.data == {"items": []}


async def test_a_bad_subscription_url_is_refused_alike_naming_the_field(
    hub: Hub, client: Client
) -> None:
    assert hub.admin_key
    for url in ("http://[::1", "https://me:pw@hooks.example.com/x"):
        refused = await client.subscribe(hub.admin_key, url, ["message.status"])
        assert (refused.ok, refused.error) == (False, "INVALID_ARGUMENT"), url
        assert "url" in str(refused.data)
        assert "pw" not in str(refused.data)
    assert (await client.subscriptions(hub.admin_key)).data == {"items": []}


async def test_channels_list_the_keys_own_accounts(hub: Hub, client: Client) -> None:
    assert hub.admin_key
    reader, _ = await hub.keys.create("default", Role.READER)
    stranger, _ = await hub.keys.create("tenant-b", Role.READER)
    mine = await client.channels(reader)
    assert mine.ok and mine.data is not None
    by_name = {c["name"]: c["accounts"] for c in mine.data["items"]}
    assert by_name["telegram"] == [SIMULATOR_ACCOUNT]
    [telegram] = [c for c in mine.data["items"] if c["name"] == "telegram"]
    assert (telegram["sends"], telegram["attachment_kinds"], telegram["actions"]) == (
        ["attachments", "buttons", "location", "reaction", "reply", "text"],
        ["audio", "document", "image", "sticker", "video"],
        ["typing_off", "typing_on"],
    )
    assert [c["name"] for c in mine.data["items"]] == sorted(by_name)
    theirs = await client.channels(stranger)
    assert theirs.ok and theirs.data is not None
    assert {c["name"] for c in theirs.data["items"]} == set(by_name)
    assert all(c["accounts"] == [] for c in theirs.data["items"])
    assert (await client.channels("c4a_bad_key")).error == "UNAUTHENTICATED"


def refused_at(outcome: Outcome, field: str, *words: str) -> None:
    """Refused as invalid, naming ``field`` and ``words`` (the channel, its limit)."""
    assert (outcome.ok, outcome.error) == (False, "INVALID_ARGUMENT"), outcome
    assert outcome.data is not None
    said = outcome.data.get("details") or outcome.data["error"]["field"] + ": " + str(
        outcome.data["error"]["message"]
    )
    assert said.startswith(f"{field}: "), said
    for word in words:
        assert word in said, said


async def test_kinds_a_channel_does_not_send_are_refused_alike(hub: Hub, client: Client) -> None:
    assert hub.admin_key
    key = hub.admin_key
    menu = {"button": "Pick", "sections": [{"rows": [{"id": "r1", "title": "One"}]}]}
    refused_at(
        await client.send_content(key, {"text": "hi", "menu": menu}), "content.menu", "telegram"
    )
    quick = {"text": "hi", "quick_replies": [{"title": "Yes"}]}
    refused_at(await client.send_content(key, quick), "content.quick_replies", "telegram")
    contact = {"contacts": [{"name": "Ada", "phones": ["+441"]}]}
    refused_at(await client.send_content(key, contact), "content.contacts", "telegram")
    options = {"text": "hi", "options": {"telegram": {"silent": True}}}
    refused_at(await client.send_content(key, options), "content.options.telegram", "no options")
    elsewhere = {"text": "hi", "options": {"whatsapp": {"preview_url": True}}}
    refused_at(await client.send_content(key, elsewhere), "content.options.whatsapp", "telegram")
    sticker = {"attachments": [{"url": "https://example.org/s.webp", "kind": "sticker"}]}
    sent = await client.send_content(key, sticker)
    assert sent.ok, sent.data
    deadline = time.monotonic() + 10
    while not any(s.method == "sendSticker" for s in telegram_of(hub).sent):
        assert time.monotonic() < deadline, "no sendSticker"
        await asyncio.sleep(0.02)
    [call] = [s for s in telegram_of(hub).sent if s.method == "sendSticker"]
    assert call.body == {"chat_id": "42", "sticker": "https://example.org/s.webp"}


async def test_typing_reaches_the_channel_and_mark_read_is_refused_alike(
    hub: Hub, client: Client
) -> None:
    assert hub.admin_key
    key = hub.admin_key
    sent = await client.send(key, "hello")
    assert sent.ok and sent.data is not None
    conversation = sent.data["conversation_id"]
    assert (await client.act(key, conversation, "typing_on")).ok
    assert [a.body for a in telegram_of(hub).actions] == [{"chat_id": "42", "action": "typing"}]
    assert (await client.act(key, conversation, "typing_off")).ok
    refused_at(await client.act(key, conversation, "mark_read"), "action", "telegram", "typing_on")
    assert (await client.act(key, "c_nope", "typing_on")).error == "NOT_FOUND"
    reader, _ = await hub.keys.create("default", Role.READER)
    assert (await client.act(reader, conversation, "typing_on")).error == "PERMISSION_DENIED"


async def test_a_reaction_and_a_reply_reach_the_provider_on_its_message_id(
    hub: Hub, client: Client
) -> None:
    assert hub.admin_key
    key = hub.admin_key
    first = await client.send(key, "react to me")
    assert first.ok and first.data is not None
    deadline = time.monotonic() + 10
    while not telegram_of(hub).texts("42"):
        assert time.monotonic() < deadline, "not sent"
        await asyncio.sleep(0.02)
    [original] = [s for s in telegram_of(hub).sent if s.body.get("text") == "react to me"]
    reaction = {"reaction": {"message_id": first.data["id"], "emoji": "\N{THUMBS UP SIGN}"}}
    reacted = await client.send_content(key, reaction)
    assert reacted.ok, reacted.data
    got = await client.get(key, reacted.data["id"] if reacted.data else "")
    assert got.data is not None
    assert got.data["content"]["reaction"]["emoji"] == "\N{THUMBS UP SIGN}"
    replied = await client.send_content(key, {"text": "re", "reply_to": first.data["id"]})
    assert replied.ok, replied.data
    while not any(s.body.get("text") == "re" for s in telegram_of(hub).sent):
        assert time.monotonic() < deadline, "reply not sent"
        await asyncio.sleep(0.02)
    [react] = [s for s in telegram_of(hub).sent if s.method == "setMessageReaction"]
    assert react.body == {
        "chat_id": "42",
        "message_id": original.message_id,
        "reaction": [{"type": "emoji", "emoji": "\N{THUMBS UP SIGN}"}],
    }
    [reply] = [s for s in telegram_of(hub).sent if s.body.get("text") == "re"]
    assert reply.body["reply_parameters"] == {"message_id": original.message_id}


async def test_settings_are_read_and_changed_by_admins_alike(hub: Hub, client: Client) -> None:
    """The tenant's oversize policy: reject by default; link refused on a hub without media
    links (naming the settings to set); a value that is not a policy refused naming the field;
    not an admin: denied."""
    assert hub.admin_key
    sender, _ = await hub.keys.create("default", Role.SENDER)
    assert (await client.settings(hub.admin_key)).data == {"oversize": "reject"}
    link = await client.update_settings(hub.admin_key, "link")
    assert link.error == "INVALID_ARGUMENT"
    assert "CHAT4ALL_MEDIA_LINK_SECRET" in str(link.data)
    bogus = await client.update_settings(hub.admin_key, "maybe")
    assert bogus.error == "INVALID_ARGUMENT"
    assert "oversize" in str(bogus.data)
    assert (await client.update_settings(hub.admin_key, "reject")).data == {"oversize": "reject"}
    assert (await client.settings(sender)).error == "PERMISSION_DENIED"
    assert (await client.update_settings(sender, "reject")).error == "PERMISSION_DENIED"
