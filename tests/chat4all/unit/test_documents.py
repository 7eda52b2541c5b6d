"""The hand-written documents match what ``dataclasses.asdict`` gave (they replaced it)."""

from __future__ import annotations

from dataclasses import asdict

from chat4all.domain.model import (
    Attachment,
    Button,
    Content,
    DeliveryStatus,
    Location,
    Message,
    StatusEvent,
    Template,
    content_document,
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


def test_content_document_is_asdict() -> None:
    for content in (RICH, Content(text="plain")):
        assert content_document(content) == asdict(content)


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
    expected["history"] = [asdict(e) for e in message.history]
    assert message_document(message) == expected
    assert list(message_document(message)) == list(expected)
