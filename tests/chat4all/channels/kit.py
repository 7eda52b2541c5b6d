"""The channel contract kit: what every channel plugin must pass, written once.

A channel's test is one line in test_channels.py, ``class TestMine(ChannelKit): plugin = MINE``,
plus its recorded provider payloads in ``fixtures/<channel>/*.json``, each::

    {"description": "...", "payload": <what the provider sends>,
     "messages": [{"update_id", "sender", "provider_message_id", "text",
                   "attachments": [{"kind", "url", "caption"}], "location": [lat, lon] | null,
                   and only when present: "echo", "reply_to_provider_id", "reaction",
                   "postback", "contacts", "unsupported" (as ``content_document`` writes them)}],
     "receipts": [{"provider_message_id", "status"}]}

Everything runs against the channel's own simulator on loopback, through the plugin interface
only (the kit names no channel).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from chat4all.adapters.storage.sql import SqlStore
from chat4all.config import load_settings
from chat4all.domain.model import (
    ATTACHMENT_KINDS,
    Attachment,
    Button,
    Content,
    Conversation,
    DeliveryStatus,
    Location,
    Message,
    content_document,
)
from chat4all.errors import AuthError, PermanentDelivery, RetryableDelivery
from chat4all.plugin import (
    NAME,
    SIMULATOR_ACCOUNT,
    ChannelConnector,
    ChannelPlugin,
    ChannelSettings,
    Fault,
    InboundMessage,
    Receiver,
    Simulator,
)
from chat4all.registry import Registry
from chat4all.service_layer.accounts import Accounts
from chat4all.service_layer.inbound import Inbound
from chat4all.simulator.host import running_simulators

__all__ = ["ChannelKit", "Running", "FIXTURES"]

FIXTURES = Path(__file__).parent / "fixtures"
RECIPIENT = "4242"


@dataclass(frozen=True)
class Running:
    """One channel against its simulator: settings with the simulated account."""

    settings: ChannelSettings
    simulator: Simulator
    connector: ChannelConnector
    receiver: Receiver


def contents(plugin: ChannelPlugin[Any]) -> list[tuple[str, Content]]:
    """One message of each content kind the channel declares it sends."""
    limits = plugin.limits
    kinds = [("text", Content(text="hello from the kit"))]
    for kind in sorted(limits.kinds):
        url = f"https://example.org/kit/file.{kind}"
        kinds.append((kind, Content(attachments=(Attachment(url, kind, caption="a caption"),))))
    if limits.location:
        kinds.append(("location", Content(location=Location(-23.55, -46.63, "here"))))
    if limits.buttons:
        buttons = tuple(Button(f"option {n}", payload=f"p{n}") for n in range(limits.buttons))
        kinds.append(("buttons", Content(text="choose", buttons=buttons[:3])))
    return kinds


def canonical(message: InboundMessage) -> dict[str, Any]:
    content = message.content
    return {
        "update_id": message.update_id,
        "sender": message.sender,
        "provider_message_id": message.provider_message_id,
        "text": content.text,
        "attachments": [
            {"kind": a.kind, "url": a.url, "caption": a.caption} for a in content.attachments
        ],
        "location": None
        if content.location is None
        else [content.location.latitude, content.location.longitude],
        # the later kinds, only when present (so a fixture without them stays as it was)
        **({"echo": True} if message.echo else {}),
        **_later_kinds(content),
    }


def _later_kinds(content: Content) -> dict[str, Any]:
    """``content_document``'s keys of the kinds added with the Meta channels, when present
    (``reply_to_provider_id``, ``reaction``, ``postback``, ``contacts``, ``unsupported`` ...)."""
    doc = content_document(content)
    later = ("reply_to_provider_id", "reaction", "menu", "quick_replies", "contacts", "postback")
    found = {key: json.loads(json.dumps(doc[key])) for key in later if key in doc}
    if "unsupported" in doc:
        found["unsupported"] = doc["unsupported"]
    return found


def outbound(
    plugin: ChannelPlugin[Any], content: Content, n: int = 1
) -> tuple[Conversation, Message]:
    conversation = Conversation("c-kit", "t-kit", plugin.name, SIMULATOR_ACCOUNT, RECIPIENT)
    message = Message(
        f"m-kit-{n}", "t-kit", "c-kit", n, "outbound", content, DeliveryStatus.QUEUED, 1.0
    )
    return conversation, message


class ChannelKit:
    plugin: ClassVar[ChannelPlugin[Any]]

    @pytest.fixture
    async def running(self) -> AsyncIterator[Running]:
        plugin = self.plugin
        configured = load_settings(None, Registry([plugin])).channels[plugin.name].settings
        draft = plugin.simulated(configured, "http://unused")
        simulator = plugin.simulator(draft)
        async with running_simulators({plugin.name: simulator}) as urls:
            settings = plugin.simulated(configured, urls[plugin.name])
            connector = plugin.connector(settings, None)
            try:
                yield Running(settings, simulator, connector, plugin.receiver(settings))
            finally:
                await connector.close()

    def test_its_declaration_fits_the_core(self) -> None:
        plugin = self.plugin
        assert NAME.fullmatch(plugin.name)
        assert plugin.limits.kinds <= set(ATTACHMENT_KINDS)
        assert plugin.limits.text > 0 and plugin.limits.attachments >= 0
        assert Registry([plugin]).names() == (plugin.name,)

    async def test_it_sends_each_content_kind_it_declares(self, running: Running) -> None:
        for n, (kind, content) in enumerate(contents(self.plugin), start=1):
            before = running.simulator.sent_to(RECIPIENT)
            provider_id = await running.connector.send(*outbound(self.plugin, content, n))
            assert provider_id, kind
            assert running.simulator.sent_to(RECIPIENT) > before, kind

    @pytest.mark.parametrize(
        ("fault", "outcome"),
        [
            (Fault.THROTTLED, RetryableDelivery),
            (Fault.UNAVAILABLE, RetryableDelivery),
            (Fault.REFUSED, PermanentDelivery),
        ],
    )
    async def test_provider_errors_map_to_retry_or_give_up(
        self, running: Running, fault: Fault, outcome: type[Exception]
    ) -> None:
        running.simulator.inject(fault)
        with pytest.raises(outcome):
            await running.connector.send(*outbound(self.plugin, Content(text="x")))
        assert running.simulator.sent_to(RECIPIENT) == 0
        # the fault was answered once: the next send goes through
        assert await running.connector.send(*outbound(self.plugin, Content(text="y"), 2))

    async def test_recorded_payloads_parse_into_the_canonical_model(self, running: Running) -> None:
        recorded = sorted((FIXTURES / self.plugin.name).glob("*.json"))
        assert recorded, f"record some {self.plugin.name} payloads in {FIXTURES}"
        for path in recorded:
            fixture = json.loads(path.read_text())
            payload = json.dumps(fixture["payload"]).encode()
            request = running.simulator.webhook_request(SIMULATOR_ACCOUNT, payload)
            received = await running.receiver.webhook(SIMULATOR_ACCOUNT, request)
            assert [canonical(m) for m in received.messages] == fixture["messages"], path.name
            assert [
                {"provider_message_id": r.provider_message_id, "status": r.status.value}
                for r in received.receipts
            ] == fixture["receipts"], path.name
            assert 200 <= received.reply.status < 300, path.name

    async def test_a_wrong_signature_is_refused(self, running: Running) -> None:
        payload = running.simulator.user_message(RECIPIENT, "forged")
        forged = running.simulator.webhook_request(SIMULATOR_ACCOUNT, payload, genuine=False)
        with pytest.raises(AuthError):
            await running.receiver.webhook(SIMULATOR_ACCOUNT, forged)
        unsigned = forged.__class__(forged.method, forged.query, {}, forged.body)
        with pytest.raises(AuthError):
            await running.receiver.webhook(SIMULATOR_ACCOUNT, unsigned)

    async def test_a_repeated_delivery_is_stored_once(
        self, running: Running, store: SqlStore
    ) -> None:
        name = self.plugin.name
        inbound = Inbound(
            store,
            Accounts({(name, SIMULATOR_ACCOUNT): "t-kit"}, [name]),
            {name: running.receiver},
        )
        payload = running.simulator.user_message(RECIPIENT, "only once")
        request = running.simulator.webhook_request(SIMULATOR_ACCOUNT, payload)
        first = await inbound.webhook(name, SIMULATOR_ACCOUNT, request)
        again = await inbound.webhook(name, SIMULATOR_ACCOUNT, request)
        assert 200 <= first.status < 300 and 200 <= again.status < 300
        [conversation] = (await store.conversations("t-kit", None, 10)).items
        assert (conversation.channel, conversation.recipient) == (name, RECIPIENT)
        stored = (await store.messages("t-kit", conversation.id, None, 10)).items
        assert [m.content.text for m in stored] == ["only once"]
        assert [m.direction for m in stored] == ["inbound"]
