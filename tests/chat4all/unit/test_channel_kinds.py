"""A channel declares the kinds it sends and their limits, and its typed options: what does not
fit is refused on accept with a 422 naming the field and the channel's limit; a reaction or a
reply reaches the connector with the provider's id of the message it names."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict

from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import (
    Button,
    Content,
    ContentKind,
    Menu,
    MenuRow,
    MenuSection,
    QuickReply,
    Reaction,
)
from chat4all.errors import InvalidRequest
from chat4all.plugin import BASE_CONTENT, Limits
from chat4all.ports import SendRequest
from chat4all.service_layer.messages import Messages


class FakeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    preview_url: bool = False
    messaging_type: Literal["RESPONSE", "UPDATE", "MESSAGE_TAG"] = "RESPONSE"


LIMITS = Limits(
    text=2000,
    caption=1024,
    attachments=1,
    buttons=3,
    content=BASE_CONTENT
    | {ContentKind.MENU, ContentKind.QUICK_REPLIES, ContentKind.REACTION, ContentKind.CONTACTS},
    text_bytes=1000,
    titles=20,
    menu_rows=10,
    quick_replies=13,
    options=FakeOptions,
)
PLAIN = Limits(text=4096, caption=1024, attachments=10, buttons=100)


def use(store: SqlStore) -> Messages:
    return Messages(store, clock=lambda: 1.0, limits={"fake": LIMITS, "plain": PLAIN})


def request(channel: str = "fake", **content: object) -> SendRequest:
    return SendRequest(channel, "acct", "u1", Content(**content))  # type: ignore[arg-type]


async def refused(messages: Messages, req: SendRequest, field: str, *words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await messages.send("t1", req)
    assert caught.value.field == field
    for word in words:
        assert word in str(caught.value), str(caught.value)


def rows(n: int) -> Menu:
    return Menu("Pick", (MenuSection(None, tuple(MenuRow(f"r{i}", f"Row {i}") for i in range(n))),))


async def test_over_the_channels_limits_is_refused_naming_field_and_limit(
    store: SqlStore,
) -> None:
    messages = use(store)
    four = tuple(Button(f"B{i}", f"b{i}") for i in range(4))
    await refused(messages, request(text="hi", buttons=four), "content.buttons", "fake", "3")
    await refused(messages, request(text="hi", menu=rows(11)), "content.menu.sections", "10")
    await refused(
        messages,
        request(text="hi", quick_replies=(QuickReply("a" * 21),)),
        "content.quick_replies[0].title",
        "fake allows 20",
    )
    await refused(messages, request(text="é" * 600), "content.text", "1200 bytes", "1000 bytes")
    await refused(messages, request("plain", text="hi", menu=rows(2)), "content.menu", "plain")
    assert (await messages.send("t1", request(text="é" * 500, menu=rows(10)))).message.id


async def test_options_are_the_channels_model_checked_on_accept(store: SqlStore) -> None:
    messages = use(store)
    bad = request(text="hi", options={"fake": {"messaging_type": "SPAM"}})
    await refused(messages, bad, "content.options.fake.messaging_type", "RESPONSE")
    unknown = request(text="hi", options={"fake": {"colour": "red"}})
    await refused(messages, unknown, "content.options.fake.colour")
    await refused(
        messages, request("plain", text="hi", options={"plain": {}}), "content.options.plain"
    )
    await refused(
        messages, request(text="hi", options={"plain": {}}), "content.options.plain", "fake"
    )
    good = request(text="hi", options={"fake": {"preview_url": True}})
    accepted = await messages.send("t1", good)
    stored = await store.get("t1", accepted.message.id)
    assert stored.content.options == {"fake": {"preview_url": True}}


async def test_reactions_and_replies_reach_the_connector_with_provider_ids(
    store: SqlStore,
) -> None:
    messages = use(store)
    first = await messages.send("t1", request(text="hello"))
    (item,) = await store.claim(2.0, 10, worker="w", lease=30.0)
    await store.sent(item, "wamid.FIRST", 2.0)
    await refused(
        messages,
        request(reaction=Reaction("m_nope", "\N{THUMBS UP SIGN}")),
        "content.reaction.message_id",
    )
    react = request(reaction=Reaction(first.message.id, "\N{THUMBS UP SIGN}"))
    await messages.send("t1", react)
    (item,) = await store.claim(3.0, 10, worker="w", lease=30.0)
    assert item.message.content.reaction == Reaction(
        first.message.id, "\N{THUMBS UP SIGN}", "wamid.FIRST"
    )
    await store.sent(item, "wamid.R", 3.0)
    await messages.send("t1", request(text="re", reply_to=first.message.id))
    (item,) = await store.claim(4.0, 10, worker="w", lease=30.0)
    assert item.message.content.reply_to_provider_id == "wamid.FIRST"


def test_each_channels_options_model_is_in_the_openapi_document() -> None:
    from dataclasses import dataclass  # noqa: PLC0415

    from chat4all.entrypoints.rest import create_app  # noqa: PLC0415

    @dataclass
    class Fake:
        name: str
        limits: Limits

    async def ready() -> str | None:
        return None

    plugins = [Fake("fake", LIMITS), Fake("plain", PLAIN)]
    doc = create_app(None, ready=ready, plugins=plugins).openapi()  # type: ignore[arg-type]
    schemas = doc["components"]["schemas"]
    options = schemas["ContentIn"]["properties"]["options"]
    assert options["properties"] == {"fake": {"$ref": "#/components/schemas/FakeOptions"}}
    assert set(schemas["FakeOptions"]["properties"]) == {"preview_url", "messaging_type"}
    assert "PlainOptions" not in schemas
