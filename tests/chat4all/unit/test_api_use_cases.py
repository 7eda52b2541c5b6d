"""The use cases the API entrypoints call besides messages: which channels and accounts a
tenant may use, dead letters (list, replay), a provider's webhook call (the Telegram secret
and body checks), and the access model's key format."""

from __future__ import annotations

import json

import pytest

from chat4all.adapters.channels.telegram import TelegramReceiver
from chat4all.adapters.storage.sql import SqlStore
from chat4all.config import load_settings
from chat4all.domain.access import Principal, Role, format_key, parse_key
from chat4all.domain.model import Content
from chat4all.errors import AuthError, InvalidRequest, NotFound
from chat4all.ports import SendRequest, WebhookReply, WebhookRequest
from chat4all.service_layer.accounts import Accounts
from chat4all.service_layer.dead_letters import DeadLetters
from chat4all.service_layer.inbound import Inbound

ACCOUNTS = Accounts(
    {
        ("telegram", "bot"): "t1",
        ("telegram", "bot2"): "t1",
        ("telegram", "other"): "t2",
        ("whatsapp", "wa"): "t2",
    },
    channels=["whatsapp", "telegram"],
)
SECRET = "s3cret-token"


def test_channels_are_sorted_and_each_tenant_sees_its_own_accounts() -> None:
    assert ACCOUNTS.channels() == ("telegram", "whatsapp")
    assert ACCOUNTS.of("t1") == {"telegram": ("bot", "bot2")}
    assert ACCOUNTS.of("t2") == {"telegram": ("other",), "whatsapp": ("wa",)}
    assert ACCOUNTS.of("nobody") == {}


def test_an_unknown_channel_is_refused_on_the_channel_field() -> None:
    assert ACCOUNTS.known("telegram") == "telegram"
    with pytest.raises(InvalidRequest, match="unknown channel 'fax'") as refused:
        ACCOUNTS.check("t1", "fax", "bot")
    assert refused.value.field == "channel"
    with pytest.raises(InvalidRequest) as other_tenant:
        ACCOUNTS.check("t2", "telegram", "bot")
    assert other_tenant.value.field == "account"


def test_by_default_the_channels_are_those_with_accounts() -> None:
    # (the hub passes every registered channel; there is no list of channels in the domain)
    assert Accounts({("telegram", "bot"): "t1"}).channels() == ("telegram",)
    assert Accounts({}).channels() == ()


async def test_dead_letters_are_listed_then_replayed_once(store: SqlStore) -> None:
    accepted = await store.accept(
        "t1", SendRequest("telegram", "bot", "42", Content(text="hi")), None, 1.0
    )
    (item,) = await store.claim(2.0, 10, worker="w", lease=30.0)
    await store.dead(item, "chat not found", 3.0)
    woken: list[bool] = []
    dead_letters = DeadLetters(store, lambda: woken.append(True), clock=lambda: 4.0)

    page = await dead_letters.list("t1", None, 10)
    assert [(d.message.id, d.error) for d in page.items] == [
        (accepted.message.id, "chat not found")
    ]
    assert (await dead_letters.list("t2", None, 10)).items == ()
    with pytest.raises(NotFound):
        await dead_letters.replay("t2", accepted.message.id)
    assert woken == []
    replayed = await dead_letters.replay("t1", accepted.message.id)
    assert replayed.id == accepted.message.id
    assert woken == [True]
    assert (await dead_letters.list("t1", None, 10)).items == ()
    with pytest.raises(NotFound):
        await dead_letters.replay("t1", accepted.message.id)


def call(body: bytes, presented: str | None = SECRET, method: str = "POST") -> WebhookRequest:
    headers = {"x-telegram-bot-api-secret-token": presented} if presented is not None else {}
    return WebhookRequest(method=method, query={}, headers=headers, body=body)


def update(update_id: int, text: str) -> bytes:
    return json.dumps(
        {
            "update_id": update_id,
            "message": {"message_id": update_id, "chat": {"id": 42}, "text": text},
        }
    ).encode()


async def test_a_telegram_webhook_call_is_checked_parsed_and_recorded(store: SqlStore) -> None:
    receivers = {"telegram": TelegramReceiver(SECRET)}
    inbound = Inbound(store, ACCOUNTS, receivers, clock=lambda: 5.0)
    reply = await inbound.webhook("telegram", "bot", call(update(1, "hello")))
    assert reply == WebhookReply(200, b'{"ok":true}')
    assert await inbound.webhook("telegram", "bot", call(update(1, "hello"))) == reply  # again
    (conversation,) = (await store.conversations("t1", None, 10)).items
    history = await store.messages("t1", conversation.id, None, 10)
    assert [m.content.text for m in history.items] == ["hello"]  # recorded once

    with pytest.raises(AuthError, match="Secret-Token"):
        await inbound.webhook("telegram", "bot", call(update(2, "x"), presented="wrong"))
    with pytest.raises(AuthError):
        await inbound.webhook("telegram", "bot", call(update(2, "x"), presented=None))
    with pytest.raises(InvalidRequest, match="not JSON") as not_json:
        await inbound.webhook("telegram", "bot", call(b"{nope"))
    assert not_json.value.field == "body"
    with pytest.raises(InvalidRequest, match="not a Bot API Update object"):
        await inbound.webhook("telegram", "bot", call(b"[1, 2]"))
    with pytest.raises(NotFound):
        await inbound.webhook("telegram", "nobody", call(update(3, "x")))
    with pytest.raises(NotFound, match="POST only"):
        await inbound.webhook("telegram", "bot", call(b"", method="GET"))
    with pytest.raises(NotFound):
        await inbound.webhook("fax", "bot", call(update(4, "x")))
    with pytest.raises(NotFound, match="takes no webhook calls"):
        await inbound.webhook("whatsapp", "wa", call(b"{}"))


async def test_without_a_secret_every_telegram_webhook_call_is_refused(store: SqlStore) -> None:
    inbound = Inbound(store, ACCOUNTS, {"telegram": TelegramReceiver("")})
    with pytest.raises(AuthError):
        await inbound.webhook("telegram", "bot", call(update(1, "x"), presented=""))
    # unset in the settings, the secret is a random one: no guess passes
    unset = load_settings(None).channels["telegram"]
    receiver = unset.plugin.receiver(unset.settings)
    inbound = Inbound(store, ACCOUNTS, {"telegram": receiver})
    for guess in ("", "None", "null"):
        with pytest.raises(AuthError):
            await inbound.webhook("telegram", "bot", call(update(1, "x"), presented=guess))


def test_a_key_is_read_as_its_id_and_secret() -> None:
    key = parse_key(format_key("abc123", "the_secret-part"))
    assert (key.key_id, key.secret) == ("abc123", "the_secret-part")
    for malformed in ("c4a_only", "xyz_a_b", "c4a__secret", "c4a_id_"):
        with pytest.raises(AuthError, match="malformed"):
            parse_key(malformed)
    for missing in (None, ""):
        with pytest.raises(AuthError, match="no API key"):
            parse_key(missing)


def test_roles_grant_their_actions() -> None:
    reader = Principal("k", "t1", Role.READER)
    admin = Principal("k", "t1", Role.ADMIN)
    assert reader.can("read") and not reader.can("send") and not reader.can("admin")
    assert admin.can("send") and admin.can("admin")
