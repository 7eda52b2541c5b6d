"""The WhatsApp receiver on payloads the kit's fixtures do not cover: other webhook fields,
another phone number's changes, malformed bodies, the handshake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from chat4all.adapters.channels.graph import sign
from chat4all.adapters.channels.whatsapp import (
    WhatsAppAccount,
    WhatsAppReceiver,
    WhatsAppSettings,
    parse,
)
from chat4all.domain.model import Contact, Postback, Reaction
from chat4all.errors import InvalidRequest
from chat4all.ports import WebhookRequest

NUMBER = "106540352242922"


def receiver() -> WhatsAppReceiver:
    account = WhatsAppAccount(
        phone_number_id=NUMBER,
        access_token=SecretStr("t"),
        verify_token=SecretStr("per-account"),
    )
    return WhatsAppReceiver(
        WhatsAppSettings(
            ACCOUNTS={"sales": account},
            APP_SECRET=SecretStr("app"),
            VERIFY_TOKEN=SecretStr("channel"),
        )
    )


def change(value: dict[str, object], field: str = "messages") -> bytes:
    note = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": field, "value": value}]}],
    }
    return json.dumps(note).encode()


def test_other_webhook_fields_bring_nothing_and_do_not_fail() -> None:
    template = {"event": "APPROVED", "message_template_id": 1, "message_template_name": "x"}
    assert parse(change(template, "message_template_status_update")).messages == ()
    quality = {"display_phone_number": "1555", "event": "FLAGGED", "current_limit": "TIER_1K"}
    assert parse(change(quality, "phone_number_quality_update")).receipts == ()


def test_only_this_numbers_changes_are_taken() -> None:
    message = {"from": "1", "id": "wamid.X", "type": "text", "text": {"body": "hi"}}
    other = {"metadata": {"phone_number_id": "999"}, "messages": [message]}
    mine = {"metadata": {"phone_number_id": NUMBER}, "messages": [message]}
    assert parse(change(other), NUMBER).messages == ()
    assert [m.provider_message_id for m in parse(change(mine), NUMBER).messages] == ["wamid.X"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"not json", "body"),
        (json.dumps({"object": "page", "entry": []}).encode(), "object"),
        (json.dumps({"object": "whatsapp_business_account"}).encode(), "entry"),
        (change({"messages": [{"id": "wamid.X", "type": "text"}]}), "entry.0.changes.0.value"),
    ],
)
def test_a_malformed_body_is_refused_whole_naming_where(body: bytes, where: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse(body)
    assert caught.value.field is not None and caught.value.field.startswith(where)


async def test_the_handshake_takes_the_accounts_own_verify_token() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "per-account", "hub.challenge": "77"}
    got = await receiver().webhook("sales", WebhookRequest("GET", query, {}, b""))
    assert (got.reply.status, got.reply.body) == (200, b"77")
    query["hub.verify_token"] = "channel"  # the channel's, overridden for this account
    got = await receiver().webhook("sales", WebhookRequest("GET", query, {}, b""))
    assert got.reply.status == 403
    body = change({"metadata": {"phone_number_id": NUMBER}})
    signed = WebhookRequest("POST", {}, {"x-hub-signature-256": sign("app", body)}, body)
    assert (await receiver().webhook("sales", signed)).messages == ()


def _fixture(name: str) -> bytes:
    path = Path(__file__).parent / "fixtures" / "whatsapp" / f"{name}.json"
    return json.dumps(json.loads(path.read_text())["payload"]).encode()


def test_the_kinds_beyond_the_kit_map_to_the_canonical_fields() -> None:
    [button] = parse(_fixture("button_reply")).messages
    assert button.content.postback == Postback("button", "yes-please", "Yes")
    assert button.content.reply_to_provider_id == "wamid.OURS"
    assert ("from_name", "Sheena Nelson") in button.content.extensions
    [row] = parse(_fixture("list_reply")).messages
    assert row.content.postback == Postback("list", "row-2", "Blue")
    [reaction] = parse(_fixture("reaction")).messages
    assert reaction.content.reaction == Reaction(None, "\U0001f44d", "wamid.OURS")
    [unknown] = parse(_fixture("unsupported")).messages
    assert unknown.content.unsupported == "unsupported" and not unknown.content.empty
    card = {
        "name": {"formatted_name": "Ana Silva", "first_name": "Ana"},
        "phones": [{"phone": "+55 11 99999-0000", "wa_id": "5511999990000", "type": "CELL"}],
        "org": {"company": "ACME"},
    }
    body = change(
        {
            "metadata": {"phone_number_id": NUMBER},
            "messages": [{"from": "1", "id": "wamid.C", "type": "contacts", "contacts": [card]}],
        }
    )
    [shared] = parse(body).messages
    assert shared.content.contacts == (Contact("Ana Silva", ("+55 11 99999-0000",), (), "ACME"),)


def test_a_failed_status_carries_its_reason_by_code() -> None:
    received = parse(_fixture("statuses_batch"))
    [failed] = [r for r in received.receipts if r.status.value == "failed"]
    assert failed.provider_message_id == "wamid.C"
    assert failed.detail is not None
    assert failed.detail.startswith("WhatsApp: more than 24 hours since the user last wrote")
    assert "send an approved template" in failed.detail and "code 131047" in failed.detail
    assert "HTTP" not in failed.detail
