"""The S3 media store against moto's S3 server (a real HTTP server in its own process): files
small (one PUT) and large (multipart, 40 MiB made on the fly) come back with their sha256 and
without the whole file ever in memory; the same bytes are stored once per tenant and no tenant
reads another's; an interrupted or cancelled upload leaves no parts, objects or rows behind; a
missing bucket or an unreachable service is an error naming the setting to correct, and a part
S3 refuses a 503-kind error after which nothing is left either."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from chat4all.adapters.storage.media import media_table
from chat4all.adapters.storage.media_s3 import MIN_PART_SIZE, S3MediaStore
from chat4all.adapters.storage.sql import SqlStore
from chat4all.errors import NotFound, StoreUnavailable
from tests.chat4all.integration.test_media import until
from tests.s3 import client
from tests.services import free_port

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

MIB = 1024 * 1024
PART = MIN_PART_SIZE
"""Parts of 5 MiB here: a 40 MiB file is 8 of them."""


class Generated:
    """``size`` random-looking bytes made chunk by chunk as they are read, hashed on the way
    (never held whole)."""

    def __init__(self, size: int, chunk: int = MIB, seed: bytes | None = None) -> None:
        self.size, self.chunk = size, chunk
        self.seed = seed if seed is not None else os.urandom(chunk)
        self.digest = hashlib.sha256()

    async def chunks(self) -> AsyncIterator[bytes]:
        sent = 0
        while sent < self.size:
            n = min(self.chunk, self.size - sent)
            piece = (sent.to_bytes(8, "big") + self.seed)[:n]
            self.digest.update(piece)
            sent += n
            yield piece


async def of(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def media_of(store: SqlStore, s3: S3Client, bucket: str, prefix: str = "") -> S3MediaStore:
    return S3MediaStore(store, s3, bucket, prefix=prefix, part_size=PART)


def keys(s3: S3Client, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def open_uploads(s3: S3Client, bucket: str) -> list[str]:
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


async def rows(store: SqlStore) -> int:
    async with store.engine.connect() as conn:
        return int(
            (await conn.execute(sa.select(sa.func.count()).select_from(media_table))).scalar_one()
        )


async def read_back(media: S3MediaStore, tenant: str, media_id: str) -> tuple[str, int]:
    """The sha256 and size of what ``open`` streams, read as the channels read it."""
    digest, size = hashlib.sha256(), 0
    async with media.open(tenant, media_id) as (_, handle):
        while chunk := await asyncio.to_thread(handle.read, MIB):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


async def test_small_and_large_files_come_back_by_their_sha256_never_whole_in_memory(
    store: SqlStore, s3: S3Client, bucket: str
) -> None:
    media = media_of(store, s3, bucket, prefix="hub/")
    small = os.urandom(300 * 1024)
    one = await media.put(
        "t1",
        of(small[:1000], small[1000:]),
        filename="s.bin",
        mime_type="x/y",
        kind="document",
        now=1.0,
    )
    assert (one.size, one.sha256) == (len(small), hashlib.sha256(small).hexdigest())
    assert keys(s3, bucket) == [f"hub/t1/{one.sha256[:2]}/{one.sha256}"]
    assert await read_back(media, "t1", one.id) == (one.sha256, one.size)

    large = Generated(40 * MIB)
    tracemalloc.start()
    try:
        started = time.monotonic()
        big = await media.put(
            "t1", large.chunks(), filename="big.bin", mime_type="video/mp4", kind="video", now=2.0
        )
        put_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        assert await read_back(media, "t1", big.id) == (large.digest.hexdigest(), 40 * MIB)
        read_peak = tracemalloc.get_traced_memory()[1]
        took = time.monotonic() - started
    finally:
        tracemalloc.stop()
    assert (big.sha256, big.size, big.filename) == (large.digest.hexdigest(), 40 * MIB, "big.bin")
    # the part being gathered and the part being sent (and the test's chunks), no more
    assert put_peak < 2 * PART + 3 * MIB, f"{put_peak / MIB:.1f} MiB held while storing 40 MiB"
    assert read_peak < 8 * MIB, f"{read_peak / MIB:.1f} MiB held while reading 40 MiB"
    print(
        f"40 MiB through S3 (moto): {took:.2f} s put + read; peak {put_peak / MIB:.1f} MiB "
        f"storing, {read_peak / MIB:.1f} MiB reading"
    )
    # its content address, nothing staged, no multipart upload left open
    assert keys(s3, bucket) == sorted(f"hub/t1/{m.sha256[:2]}/{m.sha256}" for m in (one, big))
    assert open_uploads(s3, bucket) == []
    assert await rows(store) == 2


async def test_the_same_bytes_are_stored_once_per_tenant_and_no_tenant_reads_another(
    store: SqlStore, s3: S3Client, bucket: str
) -> None:
    media = media_of(store, s3, bucket)
    seed = os.urandom(MIB)
    made = [Generated(PART + MIB, seed=seed) for _ in range(3)]  # multipart: two parts each
    first = await media.put(
        "t1", made[0].chunks(), filename="a", mime_type="x/y", kind="document", now=1
    )
    again = await media.put(
        "t1", made[1].chunks(), filename="b", mime_type="x/y", kind="document", now=2
    )
    other = await media.put(
        "t.2", made[2].chunks(), filename="c", mime_type="x/y", kind="document", now=3
    )
    tiny = [
        await media.put(t, of(b"hi"), filename="t", mime_type="x/y", kind="document", now=4)
        for t in ("t1", "t1")
    ]
    assert first.sha256 == again.sha256 == other.sha256
    assert len({first.id, again.id, other.id, *(m.id for m in tiny)}) == 5
    # one object per tenant and content; a tenant name unsafe as a folder goes by its hash
    folder = "~" + hashlib.sha256(b"t.2").hexdigest()[:32]
    assert keys(s3, bucket) == sorted(
        [
            f"t1/{first.sha256[:2]}/{first.sha256}",
            f"{folder}/{first.sha256[:2]}/{first.sha256}",
            f"t1/{tiny[0].sha256[:2]}/{tiny[0].sha256}",
        ]
    )
    assert open_uploads(s3, bucket) == []
    assert (await media.get("t1", again.id)).filename == "b"
    assert await read_back(media, "t.2", other.id) == (other.sha256, other.size)
    for tenant, media_id in (("t.2", first.id), ("t1", other.id)):
        with pytest.raises(NotFound):
            await media.get(tenant, media_id)
        with pytest.raises(NotFound):
            async with media.open(tenant, media_id):
                pass


async def test_an_interrupted_or_cancelled_multipart_upload_leaves_nothing_behind(
    store: SqlStore, s3: S3Client, bucket: str
) -> None:
    media = media_of(store, s3, bucket)

    async def broken() -> AsyncIterator[bytes]:
        async for chunk in Generated(3 * PART).chunks():  # two parts sent, then the client goes
            yield chunk
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await media.put("t1", broken(), filename="a", mime_type="x/y", kind="document", now=1)
    assert open_uploads(s3, bucket) == [] and keys(s3, bucket) == []

    stuck = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        async for chunk in Generated(PART + MIB).chunks():
            yield chunk
        await stuck.wait()  # never set: the request is cancelled here
        yield b"never"

    task = asyncio.create_task(
        media.put("t1", stalled(), filename="b", mime_type="x/y", kind="document", now=2)
    )
    await until(lambda: bool(open_uploads(s3, bucket)))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert open_uploads(s3, bucket) == [] and keys(s3, bucket) == []
    assert await rows(store) == 0


async def test_an_object_gone_is_not_found_and_a_bad_bucket_or_endpoint_says_what_to_correct(
    store: SqlStore, s3: S3Client, bucket: str, s3_endpoint: str
) -> None:
    media = media_of(store, s3, bucket)
    await media.check()
    stored = await media.put(
        "t1", of(b"bytes"), filename="a", mime_type="x/y", kind="document", now=1
    )
    s3.delete_object(Bucket=bucket, Key=media.key("t1", stored.sha256))
    with pytest.raises(NotFound, match="upload it again"):
        async with media.open("t1", stored.id):
            pass

    missing = S3MediaStore(store, s3, "no-such-bucket", endpoint=s3_endpoint)
    with pytest.raises(
        StoreUnavailable, match="create it, or correct CHAT4ALL_S3_BUCKET"
    ) as caught:
        await missing.check()
    assert "no-such-bucket" in str(caught.value) and s3_endpoint in str(caught.value)

    nowhere = f"http://127.0.0.1:{free_port()}"
    closed = S3MediaStore(store, client(nowhere), bucket, endpoint=nowhere)
    with pytest.raises(StoreUnavailable, match="CHAT4ALL_S3_ENDPOINT_URL"):
        await closed.check()
    # at run time the caller is told to retry, without the bucket's name
    with pytest.raises(StoreUnavailable, match="retry in a moment") as refused:
        await closed.put("t1", of(b"x"), filename="a", mime_type="x/y", kind="document", now=2)
    assert bucket not in str(refused.value)


class RefusingPart:
    """The real client, but S3 refuses one part (as a service in trouble does): a fake at the
    library's boundary."""

    def __init__(self, real: S3Client, refused: int) -> None:
        self._real, self._refused = real, refused

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def upload_part(self, **kwargs: Any) -> Any:
        if kwargs["PartNumber"] == self._refused:
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}},
                "UploadPart",
            )
        return self._real.upload_part(**kwargs)


async def test_a_part_s3_refuses_is_a_retry_later_and_the_upload_is_aborted(
    store: SqlStore, s3: S3Client, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    media = S3MediaStore(store, RefusingPart(s3, 2), bucket, part_size=PART)
    with pytest.raises(StoreUnavailable, match=r"cannot store a part of a file now \(SlowDown\)"):
        await media.put(
            "t1",
            Generated(3 * PART).chunks(),
            filename="a",
            mime_type="x/y",
            kind="document",
            now=1,
        )
    assert open_uploads(s3, bucket) == [] and keys(s3, bucket) == []
    assert await rows(store) == 0
    assert "SlowDown (Please reduce your request rate.)" in caplog.text  # for the operator
