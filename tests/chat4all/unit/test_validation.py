"""What every send is checked against before it is accepted, whichever API it came through."""

from __future__ import annotations

import math

import pytest

from chat4all.domain.model import Attachment, Button, Content, Location, Template
from chat4all.errors import InvalidRequest
from chat4all.plugin import Limits
from chat4all.ports import SendRequest
from chat4all.service_layer.messages import Messages, validate


def request(content: Content, recipient: str = "42") -> SendRequest:
    return SendRequest("telegram", "bot", recipient, content)


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (Content(text="x", buttons=(Button(title=""),)), "content.buttons[0].title"),
        (Content(text="x", buttons=(Button(title="ok", payload="p" * 65),)), "payload"),
        (Content(location=Location(91.0, 0.0)), "content.location"),
        (Content(location=Location(math.nan, 0.0)), "content.location"),
        (Content(template=Template("", "en", ())), "content.template.name"),
        (Content(template=Template("t", "e", ())), "content.template.language"),
    ],
)
def test_out_of_bounds_content_is_refused_with_its_field(content: Content, field: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        validate(request(content))
    assert refused.value.field is not None and field in refused.value.field


def test_content_within_bounds_passes() -> None:
    validate(
        request(
            Content(
                text="x",
                buttons=(Button(title="b" * 64, payload="p" * 64),),
                location=Location(-90.0, 180.0),
            ),
            recipient="r" * 128,
        )
    )


TIGHT = Limits(
    text=10,
    caption=5,
    attachments=1,
    buttons=1,
    kinds=frozenset({"image"}),
    location=False,
    templates=False,
)


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (Content(text="x" * 11), "content.text"),
        (
            Content(attachments=(Attachment("https://e.org/a", "image", caption="123456"),)),
            "caption",
        ),
        (
            Content(attachments=(Attachment("https://e.org/a", "image"),) * 2),
            "content.attachments",
        ),
        (Content(attachments=(Attachment("https://e.org/a", "audio"),)), "attachments[0].kind"),
        (Content(text="x", buttons=(Button("a"), Button("b"))), "content.buttons"),
        (Content(location=Location(1.0, 2.0)), "content.location"),
        (Content(template=Template("welcome", "en")), "content.template"),
    ],
)
def test_a_channels_limits_are_checked_with_the_field(content: Content, field: str) -> None:
    validate(request(content))  # within the bounds every channel shares
    with pytest.raises(InvalidRequest) as refused:
        validate(request(content), TIGHT)
    assert refused.value.field is not None and field in refused.value.field
    assert "telegram" in str(refused.value)  # the message names the channel


def test_content_within_a_channels_limits_passes() -> None:
    validate(
        request(Content(text="x" * 10, attachments=(Attachment("https://e.org/a", "image"),))),
        TIGHT,
    )


async def test_an_unknown_channel_is_refused_on_the_channel_field() -> None:
    messages = Messages(None, limits={"telegram": TIGHT})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest) as refused:
        await messages.send("t1", SendRequest("fax", "bot", "42", Content(text="x")))
    assert refused.value.field == "channel"
