"""The hand-written documents match what ``dataclasses.asdict`` gave (they replaced it)."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

from chat4all.domain.model import (
    Attachment,
    Button,
    Contact,
    Content,
    DeliveryStatus,
    Location,
    Menu,
    MenuRow,
    MenuSection,
    Message,
    Postback,
    QuickReply,
    Reaction,
    StatusEvent,
    Template,
    content_document,
    content_from,
    message_document,
)

RICH = Content(
    text="hi",
    attachments=(Attachment("https://x/a.png", "image", "a.png", "image/png", "cap"),),
    location=Location(1.5, 2.5, "here"),
    reply_to="m_1",
    template=Template("t", "en", ("a", "b")),
    buttons=(Button("Yes", "y"), Button("Site", url="https://x")),
    extensions=(("parse_mode", "HTML"),),
)


FULL = Content(
    text="hi",
    attachments=(Attachment("https://x/s.webp", "sticker"),),
    reply_to="m_1",
    reaction=Reaction("m_1", "\N{THUMBS UP SIGN}", "wamid.1"),
    menu=Menu("Pick", (MenuSection("S", (MenuRow("r1", "One", "first"), MenuRow("r2", "Two"))),)),
    quick_replies=(QuickReply("Yes", "y"), QuickReply("No")),
    contacts=(Contact("Ada", ("+44 1",), ("a@x",), "Eng", ("https://ada",)),),
    options={"whatsapp": {"preview_url": True}},
    reply_to_provider_id="wamid.1",
    postback=Postback("list", "r1", "One"),
    unsupported="ephemeral",
)
_FIRST_RELEASE = (
    "text",
    "attachments",
    "location",
    "reply_to",
    "template",
    "buttons",
    "extensions",
)


def test_content_document_is_asdict() -> None:
    """The first release's fields always; the later kinds only when present (so a content
    without them keeps the document, and the Idempotency-Key hash, it always had)."""
    for content in (RICH, Content(text="plain")):
        assert content_document(content) == {
            k: v for k, v in asdict(content).items() if k in _FIRST_RELEASE
        }
    assert content_document(FULL) == asdict(FULL)
    assert {f.name for f in fields(Content)} == set(asdict(FULL))


def test_content_survives_its_stored_document() -> None:
    for content in (RICH, FULL, Content(text="plain")):
        assert content_from(json.loads(json.dumps(content_document(content)))) == content


def test_message_document_is_asdict_with_extensions_as_a_mapping() -> None:
    message = Message(
        "m_2",
        "t1",
        "c_1",
        3,
        "outbound",
        RICH,
        DeliveryStatus.QUEUED,
        10.0,
        None,
        (StatusEvent(DeliveryStatus.ACCEPTED, 10.0), StatusEvent(DeliveryStatus.QUEUED, 10.0, "x")),
    )
    expected = asdict(message)
    expected["content"]["extensions"] = {"parse_mode": "HTML"}
    del expected["content"]["reply_to_provider_id"]  # the connector's, not the client's
    expected["history"] = [asdict(e) for e in message.history]
    assert message_document(message) == expected
    assert list(message_document(message)) == list(expected)
