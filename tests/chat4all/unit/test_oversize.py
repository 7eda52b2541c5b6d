"""The decision for an upload over a channel's limit for its kind, on a real SQLite store and a
real media directory: the send's policy, else the tenant's, else reject; a refusal says the size,
the limit and what to do; a link is the caption and a signed link in the text, the attachment
gone; a hub that cannot make links says which setting is missing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from chat4all.adapters.storage.media import FileMediaStore
from chat4all.adapters.storage.sql import SqlStore
from chat4all.adapters.storage.tenants import SqlTenantSettings
from chat4all.domain.model import Attachment, Content, Oversize
from chat4all.errors import InvalidRequest
from chat4all.plugin import Limits
from chat4all.ports import SendRequest
from chat4all.service_layer.media import MediaLibrary
from chat4all.service_layer.media_links import LINK_PATH, MediaLinks
from chat4all.service_layer.messages import Messages, body_hash
from chat4all.service_layer.tenants import Tenants

PUBLIC = "https://hub.example.org"
LIMITS = Limits(
    text=300,
    caption=100,
    attachments=2,
    buttons=0,
    kinds=frozenset({"video", "document"}),
    max_bytes={"video": 10, "document": 20},
)
LINKS = MediaLinks(SecretStr("s" * 16), PUBLIC, ttl=60)


async def of(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
def media(store: SqlStore, tmp_path: Path) -> MediaLibrary:
    return MediaLibrary(FileMediaStore(store, tmp_path / "media"))


def messages(store: SqlStore, media: MediaLibrary, links: MediaLinks = LINKS) -> Messages:
    return Messages(
        store,
        clock=lambda: 1000.0,
        media=media.store,
        limits={"chan": LIMITS},
        links=links,
        tenants=Tenants(SqlTenantSettings(store), links, clock=lambda: 1000.0),
    )


def upload(media_id: str, caption: str | None = None) -> Attachment:
    """An upload, sent as its own kind."""
    return Attachment(kind=None, caption=caption, media_id=media_id)


def send(
    *attachments: Attachment, text: str | None = None, oversize: Oversize | None = None
) -> SendRequest:
    return SendRequest("chan", "bot", "42", Content(text=text, attachments=attachments), oversize)


async def test_the_send_then_the_tenant_then_reject_decide(
    store: SqlStore, media: MediaLibrary
) -> None:
    use = messages(store, media)
    fits = await media.upload("t1", of(b"x" * 10), "ok.mp4")
    over = await media.upload("t1", of(b"x" * 11), "big.mp4")
    assert (fits.kind, over.kind) == ("video", "video")

    at_limit = await use.send("t1", send(upload(fits.id)))
    assert [a.media_id for a in at_limit.message.content.attachments] == [fits.id]

    with pytest.raises(InvalidRequest) as refused:  # no setting: reject
        await use.send("t1", send(upload(over.id)))
    assert refused.value.field == "content.attachments[0].kind"
    assert str(refused.value) == (
        "the video is 11 bytes; chan takes videos up to 10 bytes: send a smaller file, send it "
        'with kind "document" or send it as a link (oversize "link")'
    )

    linked = await use.send(
        "t1",
        send(upload(over.id, "look"), text="hi", oversize=Oversize.LINK),
    )
    content = linked.message.content
    assert content.attachments == ()
    assert content.text is not None
    url = content.text.rsplit("\n", 1)[-1]
    assert content.text == f"hi\n\nlook\n{url}"  # the text, then the caption and its link
    assert url.startswith(PUBLIC + LINK_PATH)
    signed = LINKS.verify(url.removeprefix(PUBLIC + LINK_PATH), now=1000.0)
    assert signed is not None
    assert (signed.tenant, signed.media_id, signed.expires) == ("t1", over.id, 1060)

    await Tenants(SqlTenantSettings(store), LINKS).update("t1", "link")
    by_tenant = await use.send("t1", send(upload(over.id)))
    assert by_tenant.message.content.text is not None
    assert by_tenant.message.content.text.startswith(PUBLIC + LINK_PATH)
    with pytest.raises(InvalidRequest, match="videos up to 10 bytes"):
        await use.send("t1", send(upload(over.id), oversize=Oversize.REJECT))
    other = await media.upload("t2", of(b"x" * 11), "big.mp4")
    with pytest.raises(InvalidRequest, match="up to 10 bytes"):  # another tenant: its default
        await use.send("t2", send(upload(other.id)))


async def test_links_that_cannot_be_made_or_do_not_fit_are_refused(
    store: SqlStore, media: MediaLibrary
) -> None:
    over = await media.upload("t1", of(b"x" * 25), "huge.mp4")
    no_url = messages(store, media, MediaLinks(SecretStr("s" * 16)))
    with pytest.raises(InvalidRequest) as refused:
        await no_url.send("t1", send(upload(over.id), oversize=Oversize.LINK))
    assert refused.value.field == "oversize"
    assert "CHAT4ALL_MEDIA_PUBLIC_URL" in str(refused.value)
    with pytest.raises(InvalidRequest) as setting:
        await Tenants(SqlTenantSettings(store), MediaLinks(None)).update("t1", "link")
    assert setting.value.field == "oversize"
    assert "CHAT4ALL_MEDIA_LINK_SECRET" in str(setting.value)
    with pytest.raises(InvalidRequest, match="oversize must be one of reject, link"):
        await Tenants(SqlTenantSettings(store), LINKS).update("t1", "maybe")

    # too big even as a document: the refusal does not suggest it; nor links, on a hub
    # without them
    with pytest.raises(InvalidRequest) as as_document:
        await messages(store, media).send("t1", send(upload(over.id)))
    assert 'kind "document"' not in str(as_document.value)
    assert str(as_document.value).endswith(
        'send a smaller file or send it as a link (oversize "link")'
    )
    with pytest.raises(InvalidRequest) as no_links:
        await no_url.send("t1", send(upload(over.id)))
    assert str(no_links.value).endswith("up to 10 bytes: send a smaller file")

    # the text with its link over the channel's text limit: refused on the text
    with pytest.raises(InvalidRequest) as long:
        await messages(store, media).send(
            "t1", send(upload(over.id), text="x" * 250, oversize=Oversize.LINK)
        )
    assert long.value.field == "content.text"
    assert "chan allows 300 with the link to the file: shorten" in str(long.value)


def test_the_policy_of_a_send_is_part_of_its_idempotency_hash() -> None:
    plain = send(upload("md_1"))
    assert body_hash(plain) == body_hash(send(upload("md_1"), oversize=None))
    assert body_hash(plain) != body_hash(send(upload("md_1"), oversize=Oversize.LINK))
