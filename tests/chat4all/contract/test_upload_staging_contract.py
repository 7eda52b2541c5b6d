"""The upload staging contract (:class:`~chat4all.ports.UploadStaging`): every test runs through
the media library over the local disk (:class:`FileUploads` under the media directory) and over
the S3 bucket and the database (:class:`S3Uploads`, moto's server, chunks cut into segments of
50 000 bytes here). Chunks at their offsets in any number of calls, an interrupted chunk cut back
to the last whole one, the offset asked after a disconnect, one writer at a time, another process
going on where one stopped, expiry after the time to live without a write (the staged bytes
deleted), and the finish checking size and sha256 before the upload becomes a Media."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from chat4all.adapters.storage.media import FileMediaStore
from chat4all.adapters.storage.media_s3 import MIN_PART_SIZE, S3MediaStore
from chat4all.adapters.storage.sql import SqlStore
from chat4all.adapters.storage.uploads import FileUploads
from chat4all.adapters.storage.uploads_s3 import STAGING, S3Uploads
from chat4all.errors import InvalidRequest, NotFound, UploadConflict
from chat4all.ports import Chunk
from chat4all.service_layer.media import MediaLibrary

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

TTL = 3600.0
SEGMENT = 50_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_796_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass
class Backend:
    """A media library over one staging, and what its shared places hold."""

    library: Callable[[SqlStore], MediaLibrary]
    """A library on these places, with a database connection of its own (a process's)."""
    store: SqlStore
    staged: Callable[[], list[str]]
    """What the staging holds (files, objects) of every upload."""
    stored: Callable[[], list[str]]
    """The finished files (files, objects) of the media store."""

    def __post_init__(self) -> None:
        self.media = self.library(self.store)

    @contextlib.asynccontextmanager
    async def twin(self) -> AsyncIterator[MediaLibrary]:
        """Another process's library on the same places (directory; bucket) and database."""
        other = await SqlStore.open(self.store.engine.url.render_as_string(hide_password=False))
        try:
            yield self.library(other)
        finally:
            await other.close()


def file_backend(store: SqlStore, tmp_path: Path, clock: Clock) -> Backend:
    root = tmp_path / "media"

    def library(on: SqlStore) -> MediaLibrary:
        return MediaLibrary(
            FileMediaStore(on, root),
            max_bytes=1 << 20,
            clock=clock,
            uploads=FileUploads(root / ".uploads", ttl=TTL),
        )

    def files(staging: bool) -> list[str]:
        return sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and (".uploads" in p.parts) == staging
        )

    return Backend(library, store, lambda: files(True), lambda: files(False))


def s3_backend(store: SqlStore, clock: Clock, s3: S3Client, bucket: str) -> Backend:
    def library(on: SqlStore) -> MediaLibrary:
        media = S3MediaStore(on, s3, bucket, part_size=MIN_PART_SIZE)
        return MediaLibrary(
            media,
            max_bytes=1 << 20,
            clock=clock,
            uploads=S3Uploads(on, media, ttl=TTL, segment_size=SEGMENT),
        )

    def objects(staging: bool) -> list[str]:
        listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        return sorted(o["Key"] for o in listed if o["Key"].startswith(STAGING) == staging)

    return Backend(library, store, lambda: objects(True), lambda: objects(False))


@pytest.fixture(params=["file", "s3"])
def backend(
    request: pytest.FixtureRequest, store: SqlStore, tmp_path: Path, clock: Clock
) -> Backend:
    if request.param == "file":
        return file_backend(store, tmp_path, clock)
    s3 = request.getfixturevalue("s3")
    return s3_backend(store, clock, s3, request.getfixturevalue("bucket"))


@pytest.fixture
def media(backend: Backend) -> MediaLibrary:
    return backend.media


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

    first = await media.append("t1", staged.id, 0, Chunk(pieces(data[:half]), sha(data[:half])))
    assert first == half
    with pytest.raises(ConnectionResetError):
        await media.append("t1", staged.id, half, Chunk(pieces(data[half:], fail_after=50_000)))
    _, offset = await media.upload_offset("t1", staged.id)
    assert offset == half, "a chunk cut short is not kept"

    with pytest.raises(UploadConflict, match=f"at offset {half}, not 0"):
        await media.append("t1", staged.id, 0, Chunk(pieces(data[half:])))
    with pytest.raises(InvalidRequest, match="send the rest first"):
        await media.finish("t1", staged.id)

    assert await media.append("t1", staged.id, half, Chunk(pieces(data[half:]))) == len(data)
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
        await media.append("t1", staged.id, 0, Chunk(pieces(data), sha(b"other")))
    assert caught.value.field == "checksum"
    assert (await media.upload_offset("t1", staged.id))[1] == 0


async def test_bytes_past_the_declared_size_or_a_wrong_sha256_are_refused(
    media: MediaLibrary, backend: Backend
) -> None:
    data = os.urandom(10_000)
    staged = await media.create_upload("t1", 5_000, "a.bin")
    with pytest.raises(InvalidRequest, match="past the declared size"):
        await media.append("t1", staged.id, 0, Chunk(pieces(data)))
    assert (await media.upload_offset("t1", staged.id))[1] == 0

    lying = await media.create_upload("t1", len(data), "b.bin", sha256=sha(b"else"))
    await media.append("t1", lying.id, 0, Chunk(pieces(data)))
    with pytest.raises(InvalidRequest, match="not the declared") as caught:
        await media.finish("t1", lying.id)
    assert caught.value.field == "sha256"
    assert backend.stored() == [], "nothing is kept of a refused finish"


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


async def stream(
    data: bytes, size: int, bad: int | None = None, cut_after: int | None = None
) -> AsyncIterator[Chunk]:
    """``data`` as chunks of ``size`` with their sha256, as gRPC's AppendUpload gives them:
    chunk ``bad`` with a wrong one; the client gone after ``cut_after`` chunks."""
    for n, start in enumerate(range(0, len(data), size)):
        if n == cut_after:
            raise ConnectionResetError("the client went away")
        piece = data[start : start + size]
        yield Chunk(piece, sha(b"not it") if n == bad else sha(piece))


async def test_chunks_in_one_call_stay_whole_up_to_a_bad_one_or_a_disconnect(
    media: MediaLibrary,
) -> None:
    data = os.urandom(100_000)
    staged = await media.create_upload("t1", len(data), "a.bin", sha256=sha(data))
    with pytest.raises(ConnectionResetError):
        await media.append("t1", staged.id, 0, stream(data, 10_000, cut_after=3))
    assert (await media.upload_offset("t1", staged.id))[1] == 30_000
    with pytest.raises(InvalidRequest, match="chunk at offset 50000 does not match") as caught:
        await media.append("t1", staged.id, 30_000, stream(data[30_000:], 10_000, bad=2))
    assert caught.value.field == "checksum"
    assert (await media.upload_offset("t1", staged.id))[1] == 50_000
    rest = stream(data[50_000:], 7_000)
    assert await media.append("t1", staged.id, 50_000, rest) == len(data)
    done = await media.finish("t1", staged.id)
    assert done.sha256 == sha(data)


async def test_a_second_writer_meanwhile_is_a_conflict_and_the_first_finishes(
    media: MediaLibrary,
) -> None:
    data = os.urandom(20_000)
    staged = await media.create_upload("t1", len(data), "a.bin")
    first_in, go_on = asyncio.Event(), asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield data[:10_000]
        first_in.set()  # asked for more: the first piece is written, under the lock
        await go_on.wait()
        yield data[10_000:]

    first = asyncio.create_task(media.append("t1", staged.id, 0, Chunk(slow())))
    await first_in.wait()
    with pytest.raises(UploadConflict, match="receiving another chunk"):
        await media.append("t1", staged.id, 0, Chunk(pieces(data)))
    go_on.set()
    assert await first == len(data)
    with pytest.raises(UploadConflict, match=f"at offset {len(data)}, not 0"):
        await media.append("t1", staged.id, 0, Chunk(pieces(data)))  # the loser, once it ends
    assert (await media.finish("t1", staged.id)).sha256 == sha(data)


async def test_an_upload_idle_past_its_ttl_expires_and_is_swept(
    media: MediaLibrary, clock: Clock, backend: Backend
) -> None:
    idle = await media.create_upload("t1", 10, "idle.bin")
    await media.append("t1", idle.id, 0, Chunk(b"12345"))
    clock.now += TTL / 2
    busy = await media.create_upload("t1", 10, "busy.bin")
    clock.now += TTL / 2 + 1  # idle's last write is past the TTL; busy's is not
    assert await media.expire_uploads() == 1
    with pytest.raises(NotFound, match="expired") as caught:
        await media.upload_offset("t1", idle.id)
    assert "create a new upload" in str(caught.value)
    assert (await media.upload_offset("t1", busy.id))[1] == 0

    await media.append("t1", busy.id, 0, Chunk(b"123"))  # a write: its TTL starts again
    clock.now += TTL - 1
    assert await media.expire_uploads() == 0
    assert (await media.upload_offset("t1", busy.id))[1] == 3
    clock.now += 2
    with pytest.raises(NotFound, match="expired"):
        await media.append("t1", busy.id, 3, Chunk(b"4"))
    assert await media.expire_uploads() == 1
    assert backend.staged() == []


async def test_an_upload_being_written_is_not_swept(media: MediaLibrary, clock: Clock) -> None:
    staged = await media.create_upload("t1", 10, "a.bin")
    first_in, go_on = asyncio.Event(), asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"1234"
        first_in.set()
        await go_on.wait()
        yield b"5678"

    writing = asyncio.create_task(media.append("t1", staged.id, 0, Chunk(slow())))
    await first_in.wait()
    clock.now += TTL + 1
    assert await media.expire_uploads() == 0, "a chunk is arriving: not idle"
    go_on.set()
    assert await writing == 8
    assert (await media.upload_offset("t1", staged.id))[1] == 8


async def test_another_process_goes_on_where_one_stopped(backend: Backend) -> None:
    data = os.urandom(200_000)
    first = backend.media
    staged = await first.create_upload("t1", len(data), "a.bin", sha256=sha(data))
    assert await first.append("t1", staged.id, 0, Chunk(pieces(data[:120_000]))) == 120_000
    async with backend.twin() as second:
        assert (await second.upload_offset("t1", staged.id))[1] == 120_000
        with pytest.raises(UploadConflict, match="at offset 120000, not 0"):
            await second.append("t1", staged.id, 0, Chunk(pieces(data)))
        rest = Chunk(pieces(data[120_000:]), sha(data[120_000:]))
        assert await second.append("t1", staged.id, 120_000, rest) == len(data)
    done = await first.finish("t1", staged.id)
    assert (done.size, done.sha256) == (len(data), sha(data))
    async with first.store.open("t1", done.id) as (_, handle):
        assert handle.read() == data
    assert backend.staged() == [], "the staged bytes go once finished"
