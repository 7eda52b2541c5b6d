"""Messenger and Instagram beyond the kit, at the plugin's edges (its connector against its
simulator, its receiver on payloads as Meta sends them): actions, echoes, reactions, payloads
that are not messages, the typed options, Graph errors by code."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from chat4all.adapters.channels.instagram import CHANNEL as INSTAGRAM
from chat4all.adapters.channels.messenger import CHANNEL as MESSENGER
from chat4all.adapters.channels.messenger.connector import SendApiConnector
from chat4all.adapters.channels.messenger.simulator import EXPIRED, SendApiSimulator
from chat4all.adapters.channels.messenger.webhook import SendApiReceiver
from chat4all.config import load_settings
from chat4all.domain.model import Content, Conversation, DeliveryStatus, Message, PostbackSource
from chat4all.errors import AccountPaused, InvalidRequest, PermanentDelivery
from chat4all.plugin import SIMULATOR_ACCOUNT, ChannelPlugin, Received
from chat4all.ports import Action, ActionRequest
from chat4all.registry import Registry
from chat4all.simulator.host import running_simulators

PLUGINS = {"messenger": MESSENGER, "instagram": INSTAGRAM}
USER = "6100000000000042"


class Parts:
    def __init__(
        self, plugin: ChannelPlugin[Any], configured: Any, sim: SendApiSimulator, url: str
    ) -> None:
        settings = plugin.simulated(configured, url)
        self.sim = sim
        self.settings = settings
        connector = plugin.connector(settings, None)
        receiver = plugin.receiver(settings)
        assert isinstance(connector, SendApiConnector)
        assert isinstance(receiver, SendApiReceiver)
        self.connector, self.receiver = connector, receiver

    async def receive(self, payload: dict[str, Any]) -> Received:
        body = json.dumps(payload).encode()
        return await self.receiver.webhook(
            SIMULATOR_ACCOUNT, self.sim.webhook_request(SIMULATOR_ACCOUNT, body)
        )


@pytest.fixture(params=sorted(PLUGINS))
async def parts(request: pytest.FixtureRequest) -> AsyncIterator[Parts]:
    plugin = PLUGINS[request.param]
    configured = load_settings(None, Registry([plugin])).channels[plugin.name].settings
    sim = plugin.simulator(plugin.simulated(configured, "http://unused"))
    assert isinstance(sim, SendApiSimulator)
    async with running_simulators({plugin.name: sim}) as urls:
        running = Parts(plugin, configured, sim, urls[plugin.name])
        try:
            yield running
        finally:
            await running.connector.close()


def conversation(channel: str) -> Conversation:
    return Conversation("c1", "t1", channel, SIMULATOR_ACCOUNT, USER)


def message(content: Content) -> Message:
    return Message("m1", "t1", "c1", 1, "outbound", content, DeliveryStatus.QUEUED, 1.0)


async def test_actions_are_sender_actions(parts: Parts) -> None:
    channel = parts.connector.channel
    for action in (Action.TYPING_ON, Action.TYPING_OFF, Action.MARK_READ):
        await parts.connector.act(conversation(channel), ActionRequest(action))
    assert [s.body for s in parts.sim.sent] == [
        {"recipient": {"id": USER}, "sender_action": a}
        for a in ("typing_on", "typing_off", "mark_seen")
    ]


async def test_a_dead_token_pauses_the_account_until_resumed_or_reloaded(parts: Parts) -> None:
    connector, sim = parts.connector, parts.sim
    channel = connector.channel
    parts.sim.fail(EXPIRED)
    with pytest.raises(AccountPaused) as raised:
        await connector.send(conversation(channel), message(Content("x")))
    assert raised.value.account == SIMULATOR_ACCOUNT
    assert "190" in str(raised.value)
    token = parts.settings.accounts()[SIMULATOR_ACCOUNT].token.get_secret_value()
    assert token not in str(raised.value)
    # paused: the next sends wait without calling Meta
    assert "190" in connector.paused()[SIMULATOR_ACCOUNT]
    calls = len(sim.sent)
    with pytest.raises(AccountPaused, match="is paused"):
        await connector.send(conversation(channel), message(Content("y")))
    assert len(sim.sent) == calls
    # an admin resumes it with a new token the provider knows
    [provider_id] = sim.accounts
    sim.accounts[provider_id] = "new-page-token"
    assert connector.resume(SIMULATOR_ACCOUNT, "new-page-token")
    assert connector.paused() == {}
    assert await connector.send(conversation(channel), message(Content("z")))
    # the token replaced in the settings (a reload): swapped in
    sim.accounts[provider_id] = "reloaded-page-token"
    configured = parts.settings.accounts()[SIMULATOR_ACCOUNT]
    reloaded = parts.settings.model_copy(
        update={
            "ACCOUNTS": {
                SIMULATOR_ACCOUNT: configured.model_copy(
                    update={"token": SecretStr("reloaded-page-token")}
                )
            }
        }
    )
    assert connector.reload(reloaded) == {SIMULATOR_ACCOUNT: "new token in use"}
    assert await connector.send(conversation(channel), message(Content("again")))
    assert [s.body["message"]["text"] for s in sim.sent[-2:]] == ["z", "again"]


async def test_options_out_of_the_platform_are_refused(parts: Parts) -> None:
    channel = parts.connector.channel
    options = {channel: {"messaging_type": "MESSAGE_TAG", "tag": "POST_PURCHASE_UPDATE"}}
    content = Content("late", options=options)
    if channel == "messenger":
        assert await parts.connector.send(conversation(channel), message(content))
        assert parts.sim.sent[-1].body["tag"] == "POST_PURCHASE_UPDATE"
    else:
        with pytest.raises(PermanentDelivery, match=r"options\.instagram\.tag"):
            await parts.connector.send(conversation(channel), message(content))
    limits = PLUGINS[channel].limits
    assert limits.options is not None
    with pytest.raises(ValueError, match="MESSAGE_TAG"):
        limits.options.model_validate({"messaging_type": "MESSAGE_TAG"})


async def test_every_event_kind_of_a_batch(parts: Parts) -> None:
    sim = parts.sim
    target = sim.mid()
    received = await parts.receive(
        sim.delivery(
            sim.text_event(USER, "hi", reply_to={"mid": target}),
            sim.event(
                USER, reaction={"mid": target, "action": "react", "reaction": "love", "emoji": "❤️"}
            ),
            sim.event(USER, reaction={"mid": target, "action": "unreact"}),
            sim.event(
                sim.account_id,
                message={"mid": sim.mid(), "is_echo": True, "text": "from the inbox app"},
            )
            | {"recipient": {"id": USER}},
            sim.event(USER, message={"mid": sim.mid(), "is_unsupported": True}),
            sim.event(
                USER,
                message={
                    "mid": sim.mid(),
                    "attachments": [{"type": "ig_reel", "payload": {"reel_video_id": "1"}}],
                },
            ),
            sim.event(USER, message={"mid": sim.mid(), "is_deleted": True}),
            sim.event(USER, message={}),  # no mid: skipped, never fatal
            sim.event(USER, reaction={}),
            sim.event(USER, read={"watermark": 1764547200000}),
            sim.event(USER, standby={"x": 1}),
            "not an event",
        )
    )
    texts = [(m.sender, m.echo, m.content.text) for m in received.messages]
    assert texts == [
        (USER, False, "hi"),
        (USER, False, None),
        (USER, False, None),
        (USER, True, "from the inbox app"),
        (USER, False, None),
        (USER, False, None),
    ]
    hi, react, unreact, _, unsupported, reel = (m.content for m in received.messages)
    assert hi.reply_to_provider_id == target
    assert react.reaction is not None and react.reaction.emoji == "❤️"
    assert react.reaction.provider_message_id == target
    assert unreact.reaction is not None and unreact.reaction.emoji == ""
    assert (unsupported.unsupported, reel.unsupported) == ("unsupported", "ig_reel")
    [read] = received.receipts
    assert (read.provider_message_id, read.status, read.watermark, read.recipient) == (
        "",
        DeliveryStatus.READ,
        1764547200.0,
        USER,
    )


async def test_quick_reply_and_postback_are_postbacks(parts: Parts) -> None:
    sim = parts.sim
    received = await parts.receive(
        sim.delivery(
            sim.text_event(USER, "Yes", quick_reply={"payload": "Y"}),
            sim.event(USER, postback={"mid": sim.mid(), "title": "Start", "payload": "START"}),
        )
    )
    quick, pressed = (m.content.postback for m in received.messages)
    assert quick is not None and pressed is not None
    assert (quick.source, quick.payload, quick.title) == (PostbackSource.QUICK_REPLY, "Y", "Yes")
    assert (pressed.source, pressed.payload, pressed.title) == (
        PostbackSource.POSTBACK,
        "START",
        "Start",
    )


async def test_not_a_delivery_is_a_clear_error_and_others_accounts_are_skipped(
    parts: Parts,
) -> None:
    sim = parts.sim
    for body in ({"object": "page"}, [1, 2]):
        with pytest.raises(InvalidRequest, match="no entry list"):
            await parts.receive(body)  # type: ignore[arg-type]
    other = sim.delivery(sim.text_event(USER, "for another page"), account="999")
    assert (await parts.receive(other)).messages == ()
    changes = {
        "object": sim.platform.webhook_object,
        "entry": [{"id": sim.account_id, "changes": [{"field": "comments", "value": {}}]}],
    }
    assert await parts.receive(changes) == Received()


def test_settings_read_accounts_and_refuse_a_bad_version_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "CHAT4ALL_INSTAGRAM_ACCOUNTS",
        '{"brand": {"ig_id": "17841400000000077", "token": "IGQ-9f3e"}}',
    )
    settings = load_settings(None, Registry([INSTAGRAM])).channels["instagram"].settings
    [(name, account)] = settings.accounts().items()
    assert (name, account.provider_id) == ("brand", "17841400000000077")
    assert "IGQ-9f3e" in settings.secrets() and "IGQ-9f3e" not in repr(settings)
    monkeypatch.setenv("CHAT4ALL_INSTAGRAM_API_VERSION", "v25")
    with pytest.raises(InvalidRequest, match=r"CHAT4ALL_INSTAGRAM_API_VERSION.*v\{N\}\.0"):
        load_settings(None, Registry([INSTAGRAM]))
