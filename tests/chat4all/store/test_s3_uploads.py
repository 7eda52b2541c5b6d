"""Resumable uploads staged in the bucket (moto's server) and the database, beyond the contract
every staging keeps (tests/chat4all/contract/test_upload_staging_contract.py): a large chunk is
cut into segments as it streams in, never whole in memory, and read back as one stream; small
chunks of one call (gRPC's messages) are gathered into segments, those before a refused one
kept; a writer that stalled past its lease loses the upload to the next one and keeps nothing,
its late objects landing beside the kept ones; a part S3 refuses leaves the offset and no lease
behind; the sweep deletes staged objects no upload has; a finish whose chunks went meanwhile is
not found."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from chat4all.adapters.storage.media_s3 import MIN_PART_SIZE, S3MediaStore
from chat4all.adapters.storage.sql import SqlStore
from chat4all.adapters.storage.uploads_s3 import STAGING, S3Uploads
from chat4all.errors import InvalidRequest, NotFound, StoreUnavailable, UploadConflict
from chat4all.ports import Chunk
from chat4all.service_layer.media import MediaLibrary
from tests.chat4all.store.test_s3_media import Generated, keys, open_uploads

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

MIB = 1024 * 1024
NOW = 1_796_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def library(
    store: SqlStore, client: Any, bucket: str, **options: Any
) -> tuple[MediaLibrary, S3Uploads]:
    media = S3MediaStore(store, client, bucket, prefix="hub/", part_size=MIN_PART_SIZE)
    uploads = S3Uploads(store, media, **options)
    return MediaLibrary(media, max_bytes=64 * MIB, clock=Clock(), uploads=uploads), uploads


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def staged(s3: S3Client, bucket: str) -> list[str]:
    return [k for k in keys(s3, bucket) if k.startswith(f"hub/{STAGING}")]


async def test_a_large_chunk_is_cut_into_segments_never_whole_in_memory(
    store: SqlStore, s3: S3Client, bucket: str
) -> None:
    media, _ = library(store, s3, bucket, segment_size=MIN_PART_SIZE)
    large = Generated(22 * MIB)
    upload = await media.create_upload("t1", large.size, "big.bin")
    tracemalloc.start()
    try:
        started = time.monotonic()
        offset = await media.append("t1", upload.id, 0, Chunk(large.chunks()))
        peak = tracemalloc.get_traced_memory()[1]
        took = time.monotonic() - started
    finally:
        tracemalloc.stop()
    assert offset == large.size
    # 5 + 5 + 5 + 5 + 2 MiB, under the upload's folder
    folder = f"hub/{STAGING}{upload.id[3:]}/"
    segments = staged(s3, bucket)
    assert len(segments) == 5 and all(k.startswith(folder) for k in segments)
    sizes = [s3.head_object(Bucket=bucket, Key=k)["ContentLength"] for k in segments]
    assert sizes == [MIN_PART_SIZE] * 4 + [2 * MIB]
    # the segment being gathered (and sent as is), and the test's chunks: no more
    assert peak < MIN_PART_SIZE + 3 * MIB, f"{peak / MIB:.1f} MiB held staging 22 MiB"
    print(f"22 MiB staged in S3 (moto): {took:.2f} s, peak {peak / MIB:.1f} MiB")

    done = await media.finish("t1", upload.id)
    assert (done.size, done.sha256) == (large.size, large.digest.hexdigest())
    assert staged(s3, bucket) == [] and open_uploads(s3, bucket) == []


async def test_a_writer_stalled_past_its_lease_keeps_nothing_over_the_next_one(
    store: SqlStore, s3: S3Client, bucket: str
) -> None:
    leases = Clock(time.time())
    first, _ = library(store, s3, bucket, lease=30.0, lease_clock=leases, segment_size=10_000)
    second, _ = library(store, s3, bucket, lease=30.0, lease_clock=leases, segment_size=10_000)
    data, other = os.urandom(50_000), os.urandom(50_000)
    upload = await first.create_upload("t1", len(data), "a.bin")
    stalled, go_on = asyncio.Event(), asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield other[:25_000]  # two segments written, not kept
        stalled.set()
        await go_on.wait()
        yield other[25_000:]

    late = asyncio.create_task(first.append("t1", upload.id, 0, Chunk(slow())))
    await stalled.wait()
    with pytest.raises(UploadConflict, match="receiving another chunk"):
        await second.append("t1", upload.id, 0, Chunk(data))
    leases.now += 31  # the first writer's lease lapsed (its renewals stopped: a paused process)
    assert await second.append("t1", upload.id, 0, Chunk(data)) == len(data)
    go_on.set()
    with pytest.raises(UploadConflict, match="taken over by another request"):
        await late
    assert (await second.upload_offset("t1", upload.id))[1] == len(data)
    done = await second.finish("t1", upload.id)
    assert done.sha256 == hashlib.sha256(data).hexdigest(), "the second writer's bytes"
    assert staged(s3, bucket) == []


class RefusingPut:
    """The real client, but S3 refuses to store one object (a service in trouble): a fake at
    the library's boundary."""

    def __init__(self, real: S3Client) -> None:
        self._real = real
        self.refusing = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def put_object(self, **kwargs: Any) -> Any:
        if self.refusing:
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}},
                "PutObject",
            )
        return self._real.put_object(**kwargs)


async def test_a_chunk_s3_refuses_is_a_retry_later_and_leaves_the_upload_free(
    store: SqlStore, s3: S3Client, bucket: str
) -> None:
    refusing = RefusingPut(s3)
    media, _ = library(store, refusing, bucket)
    upload = await media.create_upload("t1", 10, "a.bin")
    with pytest.raises(StoreUnavailable, match=r"store a chunk of an upload now \(SlowDown\)"):
        await media.append("t1", upload.id, 0, Chunk(b"12345"))
    assert (await media.upload_offset("t1", upload.id))[1] == 0
    refusing.refusing = False
    # not "receiving another chunk": the refused request let the upload go
    assert await media.append("t1", upload.id, 0, Chunk(b"12345")) == 5


async def test_the_sweep_deletes_staged_objects_no_upload_has(
    store: SqlStore, s3: S3Client, bucket: str
) -> None:
    media, uploads = library(store, s3, bucket)
    kept = await media.create_upload("t1", 10, "a.bin")
    await media.append("t1", kept.id, 0, Chunk(b"12345"))
    # what a process killed mid-chunk leaves, and what a finish could not delete
    orphan = f"hub/{STAGING}{'ab' * 16}/{0:020d}.0123456789abcdef"
    s3.put_object(Bucket=bucket, Key=orphan, Body=b"lost")
    stray = f"hub/{STAGING}{kept.id[3:]}/{5:020d}.0123456789abcdef"  # a chunk never kept
    s3.put_object(Bucket=bucket, Key=stray, Body=b"67890")
    assert await uploads.expire(NOW) == 0
    left = staged(s3, bucket)
    assert orphan not in left and stray in left and len(left) == 2, "only the orphan goes"
    assert await media.append("t1", kept.id, 5, Chunk(b"abcde")) == 10
    done = await media.finish("t1", kept.id)
    assert done.sha256 == hashlib.sha256(b"12345abcde").hexdigest(), "the stray is never read"
    assert staged(s3, bucket) == []


async def test_a_finish_whose_chunks_went_meanwhile_is_not_found_and_stores_nothing(
    store: SqlStore, s3: S3Client, bucket: str
) -> None:
    media, _ = library(store, s3, bucket)
    upload = await media.create_upload("t1", 10, "a.bin")
    await media.append("t1", upload.id, 0, Chunk(b"0123456789"))
    for key in staged(s3, bucket):  # as another request's finish deletes them, last
        s3.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(NotFound, match="completed or dropped meanwhile"):
        await media.finish("t1", upload.id)
    assert keys(s3, bucket) == [] and open_uploads(s3, bucket) == []


async def messages(data: bytes, size: int, bad: int | None = None) -> AsyncIterator[Chunk]:
    """``data`` as gRPC's AppendUpload gives it: chunks of ``size`` with their sha256, chunk
    ``bad`` with a wrong one."""
    for n, start in enumerate(range(0, len(data), size)):
        piece = data[start : start + size]
        yield Chunk(piece, hashlib.sha256(b"not it" if n == bad else piece).hexdigest())


async def test_small_chunks_of_one_call_are_gathered_into_segments(
    store: SqlStore, s3: S3Client, bucket: str
) -> None:
    media, _ = library(store, s3, bucket, segment_size=10_000)
    data = os.urandom(100_000)
    upload = await media.create_upload("t1", len(data), "a.bin", sha256=sha(data))
    assert await media.append("t1", upload.id, 0, messages(data[:95_000], 1_000)) == 95_000
    sizes = [s3.head_object(Bucket=bucket, Key=k)["ContentLength"] for k in staged(s3, bucket)]
    assert sizes == [10_000] * 9 + [5_000], "95 chunks in 10 objects"
    # the whole chunks before a refused one are kept, in an object of their own
    with pytest.raises(InvalidRequest, match="chunk at offset 98000 does not match"):
        await media.append("t1", upload.id, 95_000, messages(data[95_000:], 1_000, bad=3))
    assert (await media.upload_offset("t1", upload.id))[1] == 98_000
    assert len(staged(s3, bucket)) == 11
    assert await media.append("t1", upload.id, 98_000, messages(data[98_000:], 1_000)) == len(data)
    assert (await media.finish("t1", upload.id)).sha256 == sha(data)
    assert staged(s3, bucket) == []


async def test_chunks_gathered_are_kept_once_the_next_one_is_late(
    store: SqlStore, s3: S3Client, bucket: str
) -> None:
    media, _ = library(store, s3, bucket, segment_size=10_000, gather=0.05)
    data = os.urandom(8_000)
    upload = await media.create_upload("t1", len(data), "a.bin")
    go_on = asyncio.Event()

    async def four_then_pause() -> AsyncIterator[Chunk]:
        async for chunk in messages(data[:4_000], 1_000):
            yield chunk
        await go_on.wait()  # a client that pauses (or hangs before it goes away)
        async for chunk in messages(data[4_000:], 1_000):
            yield chunk

    call = asyncio.create_task(media.append("t1", upload.id, 0, four_then_pause()))
    deadline = time.monotonic() + 20
    while (await media.upload_offset("t1", upload.id))[1] != 4_000:
        assert time.monotonic() < deadline, "the four chunks were never kept"
        await asyncio.sleep(0.01)
    go_on.set()
    assert await call == len(data)
    assert len(staged(s3, bucket)) == 2
    assert (await media.finish("t1", upload.id)).sha256 == sha(data)
