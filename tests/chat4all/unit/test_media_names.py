"""What an upload is called: the last component of the name the client gave, printable, at most
255 characters with its extension kept; ``file`` when nothing usable is left."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat4all.adapters.storage.media import FileMediaStore
from chat4all.adapters.storage.sql import SqlStore
from chat4all.service_layer.media import MediaLibrary


@pytest.fixture
def media(store: SqlStore, tmp_path: Path) -> MediaLibrary:
    return MediaLibrary(FileMediaStore(store, tmp_path / "media"), max_bytes=1000)


async def of(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("dir/../..", "file"),
        ("bell\x07\n.txt", "bell.txt"),
        (None, "file"),
        ("x" * 300 + ".txt", "x" * 251 + ".txt"),
        ("y" * 300 + "." + "z" * 20, ("y" * 300 + "." + "z" * 20)[:255]),
    ],
)
async def test_an_upload_keeps_a_safe_name(
    media: MediaLibrary, given: str | None, stored: str
) -> None:
    upload = await media.upload("t1", of(b"data"), given)
    assert upload.filename == stored
    assert len(upload.filename) <= 255
