"""Resumable uploads through the media library: chunks at their offsets in any number of
calls, an interrupted chunk cut back to the last whole one, the offset asked after a
disconnect, and the finish checking size and sha256 before the upload becomes a Media."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat4all.adapters.storage.media import FileMediaStore
from chat4all.adapters.storage.sql import SqlStore
from chat4all.adapters.storage.uploads import FileUploads
from chat4all.errors import InvalidRequest, NotFound
from chat4all.service_layer.media import MediaLibrary


@pytest.fixture
def media(store: SqlStore, tmp_path: Path) -> MediaLibrary:
    return MediaLibrary(
        FileMediaStore(store, tmp_path / "media"),
        max_bytes=1 << 20,
        uploads=FileUploads(tmp_path / "media" / ".uploads"),
    )


async def pieces(
    data: bytes, size: int = 4096, fail_after: int | None = None
) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        if fail_after is not None and start >= fail_after:
            raise ConnectionResetError("the client went away")
        yield data[start : start + size]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_an_interrupted_upload_resumes_at_its_offset_and_arrives_whole(
    media: MediaLibrary,
) -> None:
    data = os.urandom(300_000)
    half = len(data) // 2
    staged = await media.create_upload("t1", len(data), "big.bin", sha256=sha(data))

    first = await media.append("t1", staged.id, 0, pieces(data[:half]), sha(data[:half]))
    assert first == half
    with pytest.raises(ConnectionResetError):
        await media.append("t1", staged.id, half, pieces(data[half:], fail_after=50_000))
    _, offset = await media.upload_offset("t1", staged.id)
    assert offset == half, "a chunk cut short is not kept"

    with pytest.raises(InvalidRequest, match=f"at offset {half}, not 0"):
        await media.append("t1", staged.id, 0, pieces(data[half:]))
    with pytest.raises(InvalidRequest, match="send the rest first"):
        await media.finish("t1", staged.id)

    assert await media.append("t1", staged.id, half, pieces(data[half:])) == len(data)
    done = await media.finish("t1", staged.id)
    assert (done.size, done.sha256, done.filename) == (len(data), sha(data), "big.bin")
    async with media.store.open("t1", done.id) as (_, handle):
        assert sha(handle.read()) == sha(data)
    with pytest.raises(NotFound):
        await media.upload_offset("t1", staged.id)


async def test_a_chunk_with_a_wrong_checksum_is_not_kept(media: MediaLibrary) -> None:
    data = os.urandom(10_000)
    staged = await media.create_upload("t1", len(data), "a.bin")
    with pytest.raises(InvalidRequest, match="does not match") as caught:
        await media.append("t1", staged.id, 0, pieces(data), sha(b"other"))
    assert caught.value.field == "checksum"
    assert (await media.upload_offset("t1", staged.id))[1] == 0


async def test_bytes_past_the_declared_size_or_a_wrong_sha256_are_refused(
    media: MediaLibrary, tmp_path: Path
) -> None:
    data = os.urandom(10_000)
    staged = await media.create_upload("t1", 5_000, "a.bin")
    with pytest.raises(InvalidRequest, match="past the declared size"):
        await media.append("t1", staged.id, 0, pieces(data))
    assert (await media.upload_offset("t1", staged.id))[1] == 0

    lying = await media.create_upload("t1", len(data), "b.bin", sha256=sha(b"else"))
    await media.append("t1", lying.id, 0, pieces(data))
    with pytest.raises(InvalidRequest, match="not the declared") as caught:
        await media.finish("t1", lying.id)
    assert caught.value.field == "sha256"
    stored = [
        p for p in (tmp_path / "media").rglob("*") if p.is_file() and ".uploads" not in p.parts
    ]
    assert stored == [], "nothing is kept of a refused finish"


async def test_an_upload_is_its_tenants_alone_and_bad_declarations_name_the_field(
    media: MediaLibrary,
) -> None:
    staged = await media.create_upload("t1", 10, "a.bin")
    with pytest.raises(NotFound):
        await media.upload_offset("t2", staged.id)
    with pytest.raises(NotFound):
        await media.upload_offset("t1", "up_../../etc/passwd")
    for size, sha256, field in ((0, None, "size"), (2 << 20, None, "file"), (5, "xyz", "sha256")):
        with pytest.raises(InvalidRequest) as caught:
            await media.create_upload("t1", size, "a.bin", sha256=sha256)
        assert caught.value.field == field
