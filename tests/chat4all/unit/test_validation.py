"""What every send is checked against before it is accepted, whichever API it came through."""

from __future__ import annotations

import math

import pytest

from chat4all.domain.model import Button, Content, Location, Template
from chat4all.errors import InvalidRequest
from chat4all.ports import SendRequest
from chat4all.service_layer.messages import validate


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
