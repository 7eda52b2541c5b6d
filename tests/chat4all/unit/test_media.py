"""Uploads on real SQLite and a real directory: content addressing per tenant, names and types,
limits, nothing kept of a refused or broken upload, and messages that reference uploads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat4all.adapters.storage.media import FileMediaStore
from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import Attachment, Content
from chat4all.errors import InvalidRequest, NotFound
from chat4all.ports import SendRequest
from chat4all.service_layer.media import MediaLibrary
from chat4all.service_layer.messages import Messages, body_hash


@pytest.fixture
def media(store: SqlStore, tmp_path: Path) -> MediaLibrary:
    return MediaLibrary(FileMediaStore(store, tmp_path / "media"), max_bytes=1000)


async def of(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_an_upload_is_stored_by_its_content_under_its_tenant(
    media: MediaLibrary, tmp_path: Path
) -> None:
    stored = await media.upload("t1", of(b"hello ", b"world"), "../../etc/greeting.txt")
    assert stored.filename == "greeting.txt"  # a name, never a path
    assert (stored.mime_type, stored.kind, stored.size) == ("text/plain", "document", 11)
    assert stored.sha256 == hashlib.sha256(b"hello world").hexdigest()
    [path] = files(tmp_path / "media")
    assert path == tmp_path / "media" / "t1" / stored.sha256[:2] / stored.sha256
    again = await media.upload("t1", of(b"hello world"), "copy.txt")
    assert again.id != stored.id
    assert files(tmp_path / "media") == [path]  # the same bytes, once
    async with media.store.open("t1", again.id) as (found, data):
        assert found == again
        assert data.read() == b"hello world"


async def test_a_tenant_never_reads_another_tenants_media(media: MediaLibrary) -> None:
    stored = await media.upload("t1", of(b"secret"), "s.txt")
    with pytest.raises(NotFound):
        await media.get("t2", stored.id)
    with pytest.raises(NotFound):
        async with media.store.open("t2", stored.id):
            pass


async def test_an_odd_tenant_name_stays_inside_the_media_directory(
    media: MediaLibrary, tmp_path: Path
) -> None:
    await media.upload("../../escape", of(b"x"), "x.bin")
    [path] = files(tmp_path / "media")
    assert path.is_relative_to(tmp_path / "media")
    assert path.relative_to(tmp_path / "media").parts[0].startswith("~")


@pytest.mark.parametrize(
    ("chunks", "message"),
    [((b"x" * 600, b"x" * 401), "larger than 1000 bytes"), ((), "the file is empty")],
    ids=["too-big", "empty"],
)
async def test_a_refused_upload_keeps_nothing(
    media: MediaLibrary, tmp_path: Path, chunks: tuple[bytes, ...], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message) as refused:
        await media.upload("t1", of(*chunks), "x.bin")
    assert refused.value.field == "file"
    assert files(tmp_path / "media") == []


async def test_a_broken_stream_keeps_nothing(media: MediaLibrary, tmp_path: Path) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"half"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await media.upload("t1", broken(), "x.bin")
    assert files(tmp_path / "media") == []


@pytest.mark.parametrize(
    ("filename", "mime_type", "kind", "expected"),
    [
        ("a.jpg", None, None, ("image/jpeg", "image")),
        ("a.jpg", "application/octet-stream", None, ("image/jpeg", "image")),
        ("a.bin", "image/png; charset=binary", None, ("image/png", "image")),
        ("a.svg", None, None, ("image/svg+xml", "document")),
        ("a.mp4", None, None, ("video/mp4", "video")),
        ("a.mp3", None, "document", ("audio/mpeg", "document")),
        (None, None, None, ("application/octet-stream", "document")),
    ],
)
async def test_type_and_kind_default_from_the_name(
    media: MediaLibrary,
    filename: str | None,
    mime_type: str | None,
    kind: str | None,
    expected: tuple[str, str],
) -> None:
    stored = await media.upload("t1", of(b"x"), filename, mime_type, kind)
    assert (stored.mime_type, stored.kind) == expected
    assert stored.filename == (filename or "file")


async def test_bad_kinds_and_types_are_refused(media: MediaLibrary) -> None:
    with pytest.raises(InvalidRequest) as kind:
        await media.upload("t1", of(b"x"), "x", kind="sticker")
    with pytest.raises(InvalidRequest) as mime:
        await media.upload("t1", of(b"x"), "x", mime_type="not a type")
    assert (kind.value.field, mime.value.field) == ("kind", "mime_type")


def telegram(*attachments: Attachment) -> SendRequest:
    return SendRequest("telegram", "bot", "42", Content(attachments=attachments))


async def test_a_message_takes_the_uploads_kind_name_and_type(
    store: SqlStore, media: MediaLibrary
) -> None:
    photo = await media.upload("t1", of(b"\x89PNG"), "p.png")
    messages = Messages(store, media=media.store)
    accepted = await messages.send("t1", telegram(Attachment(media_id=photo.id, kind=None)))
    [attachment] = accepted.message.content.attachments
    assert attachment == Attachment(None, "image", "p.png", "image/png", None, media_id=photo.id)
    [stored] = (await store.get("t1", accepted.message.id)).content.attachments
    assert stored == attachment


async def test_a_hub_without_uploads_refuses_media_ids(store: SqlStore) -> None:
    with pytest.raises(InvalidRequest, match="no uploads") as refused:
        await Messages(store).send("t1", telegram(Attachment(media_id="md_x")))
    assert refused.value.field == "content.attachments[0].media_id"


def test_the_idempotency_hash_of_a_link_is_what_it_was_before_uploads() -> None:
    link = Attachment("https://example.org/a.pdf", None)
    before = {  # body_hash's document as it was, for a request with one linked document
        "channel": "telegram",
        "account": "bot",
        "recipient": "42",
        "content": {
            # the first release's content fields (later kinds are in it only when present)
            "text": None,
            "location": None,
            "reply_to": None,
            "template": None,
            "buttons": [],
            "extensions": [],
            "attachments": [
                {
                    "url": "https://example.org/a.pdf",
                    "kind": "document",
                    "filename": None,
                    "mime_type": None,
                    "caption": None,
                }
            ],
        },
    }
    expected = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()
    assert body_hash(telegram(link)) == expected
    assert body_hash(telegram(Attachment("https://example.org/a.pdf", "document"))) == expected
    assert body_hash(telegram(Attachment(media_id="md_1", kind=None))) != body_hash(
        telegram(Attachment(media_id="md_1", kind="document"))
    )
