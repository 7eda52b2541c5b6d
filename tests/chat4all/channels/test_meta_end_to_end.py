"""Messenger and Instagram end to end through a running hub (REST in, each channel's simulator
out, signed webhooks in): what reaches the simulator is the documented Send API JSON; receipts
move the status; a redelivered message is stored once; a bad signature is refused and stores
nothing; a window error fails the message with its reason; a storm of rate-limit errors loses
nothing and keeps each conversation's order."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio

from chat4all.adapters.channels.instagram import CHANNEL as INSTAGRAM
from chat4all.adapters.channels.messenger import CHANNEL as MESSENGER
from chat4all.adapters.channels.messenger import SendApiSimulator
from chat4all.adapters.channels.messenger.simulator import THROTTLED, Sent
from chat4all.bootstrap import Hub
from chat4all.plugin import SIMULATOR_ACCOUNT
from chat4all.registry import Registry
from tests.chat4all.conftest import hub_running, live_events
from tests.chat4all.integration.test_webhooks import Receiver, receiving

CHANNELS = ("messenger", "instagram")
HUMAN_AGENT = {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}

# One hub (and its two simulators) for the module: each test talks to users of its own (user),
# so what it sends, receives and asserts is its own; faults are queued per simulator and met
# by the test that queued them.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Hub]:
    data = tmp_path_factory.mktemp("meta-hub")
    # the whole module's requests go through one key: above the per-key rate
    channels = Registry([MESSENGER, INSTAGRAM])
    async with hub_running(data, channels=channels, RATE_PER_KEY=6000) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    async with httpx.AsyncClient(base_url=hub.url, headers=auth) as http:
        yield http


_users = itertools.count(6100000000000001)


@pytest.fixture
def user() -> str:
    """A user (PSID / IGSID) no other test of the module talks to."""
    return str(next(_users))


def sent_to(sim: SendApiSimulator, user: str) -> list[Sent]:
    """What ``sim`` accepted for ``user``, in order."""
    return [s for s in sim.sent if s.body.get("recipient", {}).get("id") == user]


async def conversations_with(
    client: httpx.AsyncClient, channel: str, user: str
) -> list[dict[str, Any]]:
    listed = (await client.get("/v1/conversations", params={"limit": 200})).json()["items"]
    return [c for c in listed if (c["channel"], c["recipient"]) == (channel, user)]


def simulator_of(hub: Hub, channel: str) -> SendApiSimulator:
    simulator = hub.channels.simulators[channel]
    assert isinstance(simulator, SendApiSimulator)
    return simulator


async def until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
    return found


async def status_of(
    client: httpx.AsyncClient, message_id: str, status: str, timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (message := (await client.get(f"/v1/messages/{message_id}")).json())["status"] != status:
        assert time.monotonic() < deadline, f"{message_id} stayed {message['status']}"
        await asyncio.sleep(0.1)
    return dict(message)


async def send(
    client: httpx.AsyncClient, channel: str, content: dict[str, Any], recipient: str
) -> str:
    body = {
        "channel": channel,
        "account": SIMULATOR_ACCOUNT,
        "recipient": recipient,
        "content": content,
    }
    answer = await client.post("/v1/messages", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def push(client: httpx.AsyncClient, sim: SendApiSimulator, channel: str, body: bytes) -> int:
    request = sim.webhook_request(SIMULATOR_ACCOUNT, body)
    answer = await client.post(
        f"/v1/channels/{channel}/{SIMULATOR_ACCOUNT}/webhook",
        content=request.body,
        headers=dict(request.headers),
    )
    return answer.status_code


@pytest.mark.parametrize("channel", CHANNELS)
async def test_each_kind_reaches_the_simulator_as_the_documented_json(
    hub: Hub, client: httpx.AsyncClient, channel: str, user: str
) -> None:
    sim = simulator_of(hub, channel)
    metadata = channel == "messenger"
    ids = [
        await send(client, channel, {"text": "olá 👋"}, user),
        await send(
            client,
            channel,
            {"attachments": [{"url": "https://example.org/a.png", "kind": "image"}]},
            user,
        ),
        await send(
            client,
            channel,
            {"attachments": [{"url": "https://example.org/a.pdf", "caption": "the invoice"}]},
            user,
        ),
        await send(
            client, channel, {"text": "we are on it", "options": {channel: HUMAN_AGENT}}, user
        ),
    ]
    await until(lambda: len(sent_to(sim, user)) == 5)

    def msg(payload: dict[str, Any], n: int) -> dict[str, Any]:
        return payload | ({"metadata": f"chat4all:{ids[n]}"} if metadata else {})

    response = {"recipient": {"id": user}, "messaging_type": "RESPONSE"}
    assert [s.body for s in sent_to(sim, user)] == [
        response | {"message": msg({"text": "olá 👋"}, 0)},
        response
        | {
            "message": msg(
                {
                    "attachment": {
                        "type": "image",
                        "payload": {"url": "https://example.org/a.png", "is_reusable": True},
                    }
                },
                1,
            )
        },
        response
        | {
            "message": msg(
                {
                    "attachment": {
                        "type": "file",
                        "payload": {"url": "https://example.org/a.pdf", "is_reusable": True},
                    }
                },
                2,
            )
        },
        response | {"message": msg({"text": "the invoice"}, 2)},
        {
            "recipient": {"id": user},
            "messaging_type": "MESSAGE_TAG",
            "tag": "HUMAN_AGENT",
            "message": msg({"text": "we are on it"}, 3),
        },
    ]
    sent = sent_to(sim, user)
    firsts = (sent[0], sent[1], sent[2], sent[4])  # a caption is a 2nd part
    for message_id, first in zip(ids, firsts, strict=True):
        got = await status_of(client, message_id, "sent")
        assert got["provider_message_id"] == first.message_id


async def test_messenger_buttons_are_a_button_template(
    hub: Hub, client: httpx.AsyncClient, user: str
) -> None:
    sim = simulator_of(hub, "messenger")
    buttons = [{"title": "Yes", "payload": "YES"}, {"title": "Site", "url": "https://example.org"}]
    await send(client, "messenger", {"text": "Confirm?", "buttons": buttons}, user)
    [sent] = await until(lambda: sim.messages(user))
    assert sent["attachment"] == {
        "type": "template",
        "payload": {
            "template_type": "button",
            "text": "Confirm?",
            "buttons": [
                {"type": "postback", "title": "Yes", "payload": "YES"},
                {"type": "web_url", "url": "https://example.org", "title": "Site"},
            ],
        },
    }


async def test_richer_content_than_a_channel_takes_is_refused_at_accept(
    client: httpx.AsyncClient, user: str
) -> None:
    body = {"account": SIMULATOR_ACCOUNT, "recipient": user}
    buttons = {"text": "choose", "buttons": [{"title": "A", "payload": "a"}]}
    refused = await client.post(
        "/v1/messages", json=body | {"channel": "instagram", "content": buttons}
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "content.buttons"
    four = {"text": "choose", "buttons": [{"title": str(n), "payload": str(n)} for n in range(4)]}
    refused = await client.post(
        "/v1/messages", json=body | {"channel": "messenger", "content": four}
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "content.buttons"
    located = {"location": {"latitude": 1.0, "longitude": 2.0}}
    refused = await client.post(
        "/v1/messages", json=body | {"channel": "messenger", "content": located}
    )
    assert refused.status_code == 422


@pytest.mark.parametrize("channel", CHANNELS)
async def test_receipts_move_the_status(
    hub: Hub, client: httpx.AsyncClient, channel: str, user: str
) -> None:
    sim = simulator_of(hub, channel)
    message_id = await send(client, channel, {"text": "receipt me"}, user)
    sent = await status_of(client, message_id, "sent")
    mid = sent["provider_message_id"]
    if channel == "messenger":
        delivered = sim.event(user, delivery={"mids": [mid], "watermark": int(time.time() * 1000)})
        assert await push(client, sim, channel, _json(sim.delivery(delivered))) == 200
        await status_of(client, message_id, "delivered")
    seen = sim.event(user, read={"mid": mid})
    assert await push(client, sim, channel, _json(sim.delivery(seen))) == 200
    got = await status_of(client, message_id, "read")
    # a late delivery after read changes nothing
    late = sim.event(user, delivery={"mids": [mid], "watermark": 1})
    assert await push(client, sim, channel, _json(sim.delivery(late))) == 200
    assert (await client.get(f"/v1/messages/{message_id}")).json()["history"] == got["history"]


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_redelivered_batch_is_stored_once_and_a_bad_signature_stores_nothing(
    hub: Hub, client: httpx.AsyncClient, channel: str, user: str
) -> None:
    sim = simulator_of(hub, channel)
    batch = sim.delivery(
        sim.text_event(user, "first"),
        sim.event(user, optin={"ref": "x"}),  # not a message: acknowledged, never fatal
        sim.text_event(user, "second", quick_reply={"payload": "Q1"}),
        sim.event(user, postback={"mid": sim.mid(), "title": "Start", "payload": "START"}),
    )
    webhook = f"/v1/channels/{channel}/{SIMULATOR_ACCOUNT}/webhook"
    forged = sim.webhook_request(SIMULATOR_ACCOUNT, _json(batch), genuine=False)
    answer = await client.post(webhook, content=forged.body, headers=dict(forged.headers))
    assert answer.status_code == 401
    unsigned = await client.post(webhook, content=forged.body)
    assert unsigned.status_code == 401
    assert await conversations_with(client, channel, user) == []
    for _ in range(2):  # Meta redelivers
        assert await push(client, sim, channel, _json(batch)) == 200
    [conversation] = await conversations_with(client, channel, user)
    items = (await client.get(f"/v1/conversations/{conversation['id']}/messages")).json()["items"]
    assert [m["content"]["text"] for m in items] == ["first", "second", None]
    assert [m["content"]["postback"] for m in items] == [
        None,
        {"source": "quick_reply", "payload": "Q1", "title": "second"},
        {"source": "postback", "payload": "START", "title": "Start"},
    ]


@pytest.mark.parametrize("channel", CHANNELS)
async def test_the_handshake_echoes_the_challenge_only_for_our_verify_token(
    hub: Hub, client: httpx.AsyncClient, channel: str
) -> None:
    webhook = f"/v1/channels/{channel}/{SIMULATOR_ACCOUNT}/webhook"
    settings = hub.channels.settings[channel]
    token = settings.VERIFY_TOKEN.get_secret_value()  # type: ignore[attr-defined]
    query = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}
    answer = await client.get(webhook, params=query)
    assert (answer.status_code, answer.text) == (200, "1158201444")
    wrong = await client.get(webhook, params=query | {"hub.verify_token": "nope"})
    assert wrong.status_code == 403


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_window_error_fails_the_message_with_its_reason(
    hub: Hub, client: httpx.AsyncClient, channel: str, user: str
) -> None:
    sim = simulator_of(hub, channel)
    sim.close_window(user)
    message_id = await send(client, channel, {"text": "too late"}, user)
    failed = await status_of(client, message_id, "failed")
    reason = failed["history"][-1]["detail"]
    assert "2018278" in reason and "HUMAN_AGENT" in reason
    tagged = {"text": "agent here", "options": {channel: HUMAN_AGENT}}
    await status_of(client, await send(client, channel, tagged, user), "sent")
    assert sim.texts(user) == ["agent here"]


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_rate_limit_storm_is_absorbed_in_order(
    hub: Hub, client: httpx.AsyncClient, channel: str, user: str
) -> None:
    sim = simulator_of(hub, channel)
    sim.fail(THROTTLED, times=4)
    users = (f"{user}1", f"{user}2")
    for n in range(6):
        for one in users:
            await send(client, channel, {"text": f"{one}:{n}"}, one)
    await until(lambda: sum(sim.sent_to(one) for one in users) == 12, timeout=30)
    for one in users:
        assert sim.texts(one) == [f"{one}:{n}" for n in range(6)]


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


async def test_an_upload_goes_once_to_message_attachments_and_is_reused(
    hub: Hub, client: httpx.AsyncClient, user: str
) -> None:
    sim = simulator_of(hub, "messenger")
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 64 + b"\n%%EOF\n"
    answer = await client.post("/v1/media", files={"file": ("invoice.pdf", pdf, "application/pdf")})
    assert answer.status_code == 201, answer.text
    media = answer.json()
    content = {"attachments": [{"media_id": media["id"]}]}
    for _ in range(2):
        await status_of(client, await send(client, "messenger", content, user), "sent")
    [upload] = sim.uploads
    assert (upload.sha256, upload.size, upload.type) == (
        hashlib.sha256(pdf).hexdigest(),
        len(pdf),
        "file",
    )
    assert (upload.filename, upload.content_type) == ("invoice.pdf", "application/pdf")
    assert [m["attachment"] for m in sim.messages(user)] == [
        {"type": "file", "payload": {"attachment_id": upload.attachment_id}}
    ] * 2


async def test_instagram_refuses_an_upload_with_a_reason(
    hub: Hub, client: httpx.AsyncClient, user: str
) -> None:
    answer = await client.post(
        "/v1/media", files={"file": ("a.pdf", b"%PDF-1.4\n", "application/pdf")}
    )
    content = {"attachments": [{"media_id": answer.json()["id"]}]}
    failed = await status_of(client, await send(client, "instagram", content, user), "failed")
    assert "by URL only" in failed["history"][-1]["detail"]
    assert sent_to(simulator_of(hub, "instagram"), user) == []


@pytest.mark.parametrize("channel", CHANNELS)
async def test_quick_replies_reach_the_simulator_as_documented(
    hub: Hub, client: httpx.AsyncClient, channel: str, user: str
) -> None:
    sim = simulator_of(hub, channel)
    quick = [{"title": "Yes", "payload": "Y"}, {"title": "No"}]
    await send(client, channel, {"text": "Card?", "quick_replies": quick}, user)
    [message] = await until(lambda: sim.messages(user))
    assert message["text"] == "Card?"
    assert message["quick_replies"] == [
        {"content_type": "text", "title": "Yes", "payload": "Y"},
        {"content_type": "text", "title": "No", "payload": "No"},
    ]
    refused = await client.post(
        "/v1/messages",
        json={
            "channel": channel,
            "account": SIMULATOR_ACCOUNT,
            "recipient": user,
            "content": {"text": "?", "quick_replies": [{"title": str(n)} for n in range(14)]},
        },
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "content.quick_replies"


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_reply_and_a_reaction_name_the_message_by_its_mid(
    hub: Hub, client: httpx.AsyncClient, channel: str, user: str
) -> None:
    sim = simulator_of(hub, channel)
    inbound = sim.text_event(user, "can I pay by card?")
    their_mid = inbound["message"]["mid"]
    assert await push(client, sim, channel, _json(sim.delivery(inbound))) == 200
    [conversation] = await conversations_with(client, channel, user)
    [theirs] = (await client.get(f"/v1/conversations/{conversation['id']}/messages")).json()[
        "items"
    ]
    await send(client, channel, {"text": "yes, any card", "reply_to": theirs["id"]}, user)
    await send(client, channel, {"reaction": {"message_id": theirs["id"], "emoji": "❤️"}}, user)
    await until(lambda: len(sent_to(sim, user)) == 2, timeout=2)
    reply, reaction = (s.body for s in sent_to(sim, user))
    assert reply["reply_to"] == {"mid": their_mid}
    assert reaction == {
        "recipient": {"id": user},
        "sender_action": "react",
        "payload": {"message_id": their_mid, "reaction": "love"},
    }


async def test_instagram_counts_bytes_and_refuses_at_accept(
    client: httpx.AsyncClient, user: str
) -> None:
    body = {"channel": "instagram", "account": SIMULATOR_ACCOUNT, "recipient": user}
    fits = await client.post("/v1/messages", json=body | {"content": {"text": "é" * 500}})
    assert fits.status_code == 202, fits.text
    over = await client.post("/v1/messages", json=body | {"content": {"text": "é" * 501}})
    assert over.status_code == 422
    error = over.json()["error"]
    assert error["field"] == "content.text" and "1000" in error["message"]
    assert "instagram" in error["message"]
    # and Messenger counts characters
    messenger = body | {"channel": "messenger", "content": {"text": "é" * 2000}}
    assert (await client.post("/v1/messages", json=messenger)).status_code == 202


async def test_messenger_watermarks_apply_to_every_earlier_message(
    hub: Hub, client: httpx.AsyncClient, user: str
) -> None:
    sim = simulator_of(hub, "messenger")
    ids = [await send(client, "messenger", {"text": f"n{n}"}, user) for n in range(3)]
    for message_id in ids:
        await status_of(client, message_id, "sent")
    watermark = int(time.time() * 1000) + 1000
    delivered = sim.event(user, delivery={"watermark": watermark})
    assert await push(client, sim, "messenger", _json(sim.delivery(delivered))) == 200
    for message_id in ids:
        await status_of(client, message_id, "delivered", timeout=3)
    read = sim.event(user, read={"watermark": watermark})
    assert await push(client, sim, "messenger", _json(sim.delivery(read))) == 200
    for message_id in ids:
        await status_of(client, message_id, "read")


async def test_an_echo_from_the_inbox_app_is_stored_as_outbound_and_ours_once(
    hub: Hub, client: httpx.AsyncClient, user: str
) -> None:
    sim = simulator_of(hub, "messenger")
    ours = await send(client, "messenger", {"text": "from the API"}, user)
    sent = await status_of(client, ours, "sent")

    def echo(mid: str, text: str, **more: Any) -> dict[str, Any]:
        event = sim.event(
            sim.account_id, message={"mid": mid, "is_echo": True, "text": text, **more}
        )
        return event | {"recipient": {"id": user}}

    batch = sim.delivery(
        echo(sent["provider_message_id"], "from the API", metadata=f"chat4all:{ours}"),
        echo(sim.mid(), "typed in the Page inbox"),
    )
    for _ in range(2):
        assert await push(client, sim, "messenger", _json(batch)) == 200
    [conversation] = await conversations_with(client, "messenger", user)
    items = (await client.get(f"/v1/conversations/{conversation['id']}/messages")).json()["items"]
    assert [(m["direction"], m["content"]["text"]) for m in items] == [
        ("outbound", "from the API"),
        ("outbound", "typed in the Page inbox"),
    ]


@pytest.mark.parametrize("channel", CHANNELS)
async def test_an_inbound_message_reaches_a_client_webhook_and_sse_once(
    hub: Hub, client: httpx.AsyncClient, channel: str, user: str
) -> None:
    sim = simulator_of(hub, channel)
    receiver = Receiver()
    async with receiving(receiver) as url:
        created = await client.post(
            "/v1/subscriptions", json={"url": url, "events": ["message.inbound"]}
        )
        receiver.secret = created.json()["secret"]
        try:
            async with live_events(hub, client) as live:
                batch = sim.delivery(sim.text_event(user, "first"), sim.text_event(user, "second"))
                webhook = f"{hub.url}/v1/channels/{channel}/{SIMULATOR_ACCOUNT}/webhook"
                assert [await sim.push(webhook, batch) for _ in range(2)] == [200, 200]
                await until(lambda: len(receiver.received) >= 2 and len(live) >= 2)
                await asyncio.sleep(0.3)  # a repeat would arrive in this time
        finally:
            await client.delete(f"/v1/subscriptions/{created.json()['id']}")
    [conversation] = await conversations_with(client, channel, user)
    ours = [e["data"] for _, e in receiver.received]
    ours = [d for d in ours if d["conversation_id"] == conversation["id"]]
    # once each (client webhooks are delivered concurrently: in any order)
    texts = [d["content"]["text"] for d in sorted(ours, key=lambda d: d["seq"])]
    assert texts == ["first", "second"]
    assert [
        e["content"]["text"]
        for k, e in live
        if k == "message.inbound" and e["conversation_id"] == conversation["id"]
    ] == texts


@pytest.mark.parametrize("channel", CHANNELS)
async def test_actions_over_rest_are_sender_actions(
    hub: Hub, client: httpx.AsyncClient, channel: str, user: str
) -> None:
    sim = simulator_of(hub, channel)
    await status_of(client, await send(client, channel, {"text": "hello"}, user), "sent")
    [conversation] = await conversations_with(client, channel, user)
    for action in ("typing_on", "typing_off", "mark_read"):
        answer = await client.post(
            f"/v1/conversations/{conversation['id']}/actions", json={"action": action}
        )
        assert answer.status_code == 204, answer.text
    assert [s.body for s in sent_to(sim, user)[1:]] == [
        {"recipient": {"id": user}, "sender_action": a}
        for a in ("typing_on", "typing_off", "mark_seen")
    ]


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


@pytest.mark.parametrize("channel", CHANNELS)
async def test_an_inbound_image_reaches_the_client_as_our_media(
    hub: Hub, client: httpx.AsyncClient, channel: str, user: str
) -> None:
    """The CDN URL in the webhook is downloaded into our media store (after one 500 from the
    CDN, retried) before the message is announced: the client's webhook and SSE get a media id
    whose bytes are the ones the CDN served; the CDN URL stays as the source."""
    sim = simulator_of(hub, channel)
    url = sim.cdn_file(PNG, "image/png", hub.channels.simulator_urls[channel])
    kind = "image"
    sim.cdn_faults = 1
    receiver = Receiver()
    async with receiving(receiver) as hook:
        created = await client.post(
            "/v1/subscriptions", json={"url": hook, "events": ["message.inbound"]}
        )
        receiver.secret = created.json()["secret"]
        try:
            async with live_events(hub, client) as live:
                event = sim.attachment_event(user, kind, url)
                assert await push(client, sim, channel, _json(sim.delivery(event))) == 200
                await until(lambda: receiver.received and live)
        finally:
            await client.delete(f"/v1/subscriptions/{created.json()['id']}")
    [(_, hooked)] = receiver.received
    [(_, streamed)] = [(k, e) for k, e in live if k == "message.inbound"]
    assert hooked["data"] == streamed
    [attachment] = streamed["content"]["attachments"]
    assert (attachment["url"], attachment["kind"]) == (url, "image")
    assert attachment["mime_type"] == "image/png"
    assert "media_error" not in streamed["content"]["extensions"]
    download = await client.get(f"/v1/media/{attachment['media_id']}")
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == hashlib.sha256(PNG).hexdigest()
    assert download.headers["content-type"] == "image/png"
    assert sim.cdn_faults == 0  # the 500 was met, and the download tried again
    [authorization] = [a for key, a in sim.downloads if f"/_cdn/{key}/" in url]
    assert authorization is None  # no token goes to the CDN


async def test_an_attachment_the_cdn_will_not_serve_keeps_the_message(
    hub: Hub, client: httpx.AsyncClient, user: str
) -> None:
    """A download that fails for good (the CDN's 403: the URL expired) leaves the attachment
    as its reference, says why in ``media_error``, and the message is stored and announced."""
    sim = simulator_of(hub, "messenger")
    gone = f"{hub.channels.simulator_urls['messenger']}/_cdn/0/0_n.jpg?oh=expired"
    async with live_events(hub, client) as live:
        event = sim.attachment_event(user, "image", gone)
        assert await push(client, sim, "messenger", _json(sim.delivery(event))) == 200
        await until(lambda: live)
    [(kind, announced)] = live
    assert kind == "message.inbound"
    [attachment] = announced["content"]["attachments"]
    assert (attachment["url"], attachment["media_id"]) == (gone, None)
    assert "attachments[0]" in announced["content"]["extensions"]["media_error"]
    [conversation] = await conversations_with(client, "messenger", user)
    items = (await client.get(f"/v1/conversations/{conversation['id']}/messages")).json()["items"]
    assert [m["id"] for m in items] == [announced["id"]]


@pytest.fixture
async def held_cdn(hub: Hub) -> AsyncIterator[tuple[SendApiSimulator, asyncio.Event]]:
    """Messenger's simulator with its CDN holding every download until the event is set."""
    sim = simulator_of(hub, "messenger")
    sim.cdn_hold = asyncio.Event()
    try:
        yield sim, sim.cdn_hold
    finally:
        sim.cdn_hold.set()
        sim.cdn_hold = None


async def test_the_provider_is_answered_before_the_files_are_fetched(
    hub: Hub,
    client: httpx.AsyncClient,
    user: str,
    held_cdn: tuple[SendApiSimulator, asyncio.Event],
) -> None:
    """Meta wants its answer fast: a message with a file is stored, the webhook answered 200
    while the CDN still holds the download, and the message announced once the file is ours."""
    sim, release = held_cdn
    url = sim.cdn_file(PNG, "image/png", hub.channels.simulator_urls["messenger"])
    async with live_events(hub, client) as live:
        event = sim.attachment_event(user, "image", url)
        assert await push(client, sim, "messenger", _json(sim.delivery(event))) == 200
        [conversation] = await conversations_with(client, "messenger", user)
        path = f"/v1/conversations/{conversation['id']}/messages"
        [stored] = (await client.get(path)).json()["items"]
        assert stored["content"]["attachments"][0]["media_id"] is None  # not fetched yet
        assert live == []  # and not announced yet
        release.set()
        await until(lambda: live)
    [(kind, announced)] = live
    assert (kind, announced["id"]) == ("message.inbound", stored["id"])
    assert announced["content"]["attachments"][0]["media_id"]


async def test_a_message_left_unannounced_by_a_dead_process_is_completed_by_the_sweep(
    hub: Hub,
    client: httpx.AsyncClient,
    user: str,
    held_cdn: tuple[SendApiSimulator, asyncio.Event],
) -> None:
    """The process fetching a message's file stops (its downloads are cancelled): the message
    stays stored and unannounced, and the next sweep fetches the file and announces it, once."""
    sim, release = held_cdn
    url = sim.cdn_file(PNG, "image/png", hub.channels.simulator_urls["messenger"])
    async with live_events(hub, client) as live:
        event = sim.attachment_event(user, "image", url)
        assert await push(client, sim, "messenger", _json(sim.delivery(event))) == 200
        await hub.inbound.close()  # what a process stopped mid-download leaves
        release.set()
        assert await hub.inbound.announce_pending(older_than=0) == 1
        await until(lambda: live)
        assert await hub.inbound.announce_pending(older_than=0) == 0
    [(kind, announced)] = live
    assert kind == "message.inbound"
    download = await client.get(f"/v1/media/{announced['content']['attachments'][0]['media_id']}")
    assert hashlib.sha256(download.content).digest() == hashlib.sha256(PNG).digest()
