"""A resumable upload end to end through the hub, over REST and over gRPC: create, chunks at
their offsets with their checksums, a chunk refused or cut off by a disconnect, where it
stands, the rest, complete; the media then has the file's sha256 and its bytes. Two writers of
one upload at once: the second is refused (409, ABORTED). An upload idle past
CHAT4ALL_UPLOAD_TTL_HOURS is swept by the housekeeping and answers 404 saying it expired. Every
test runs with the media on the disk and in an S3 bucket (moto's server), where the uploads are
staged too."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa

from chat4all.adapters.storage.schema import staged_uploads
from chat4all.adapters.storage.uploads_s3 import STAGING
from chat4all.bootstrap import Hub, housekeep
from chat4all.domain.access import Role
from chat4all.v1 import api_pb2 as pb
from chat4all.v1 import api_pb2_grpc as pb_grpc
from tests.chat4all.conftest import hub_running
from tests.chat4all.integration.test_s3_hub import s3_settings
from tests.s3 import client

KIB = 1024


class Clock:
    """The hub's wall clock, moved forward by the tests."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The media settings: files under DATA_DIR, or a bucket of moto's server (resumable
    uploads staged there, their state in the database)."""
    if request.param == "file":
        return {}
    endpoint = request.getfixturevalue("s3_endpoint")
    return s3_settings(endpoint, request.getfixturevalue("bucket"))


@pytest.fixture
async def hub(tmp_path: Path, clock: Clock, backend: dict[str, Any]) -> AsyncIterator[Hub]:
    async with hub_running(
        tmp_path,
        overrides={"clock": clock},
        MEDIA_MAX_BYTES=4 * 1024 * KIB,
        RATE_PER_KEY=0,
        **backend,
    ) as running:
        yield running


async def holding(hub: Hub, upload_id: str) -> bool:
    """Whether a request holds the upload now (and has begun receiving its bytes)."""
    if hub.settings.MEDIA_BACKEND == "file":
        part = hub.settings.media_dir / ".uploads" / f"{upload_id[3:]}.part"
        return part.stat().st_size > 0
    async with hub.store.engine.connect() as conn:
        holder = await conn.execute(
            sa.select(staged_uploads.c.holder).where(staged_uploads.c.id == upload_id)
        )
        return holder.scalar() is not None


def staged_bytes(hub: Hub, upload_id: str) -> list[str]:
    """What is staged of the upload: its files, or its objects in the bucket."""
    if hub.settings.MEDIA_BACKEND == "file":
        return [p.name for p in (hub.settings.media_dir / ".uploads").glob(f"{upload_id[3:]}.*")]
    s3 = client(hub.settings.S3_ENDPOINT_URL)
    folder = f"{hub.settings.S3_PREFIX}{STAGING}{upload_id[3:]}/"
    listed = s3.list_objects_v2(Bucket=hub.settings.S3_BUCKET, Prefix=folder)
    return [o["Key"] for o in listed.get("Contents", [])]


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


def checksum(data: bytes) -> str:
    return "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode()


async def test_a_chunked_upload_resumes_after_a_bad_chunk_and_becomes_media(hub: Hub) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    half = len(data) // 2
    whole = hashlib.sha256(data).hexdigest()
    assert hub.admin_key
    headers = {"Authorization": f"Bearer {hub.admin_key}"}
    async with httpx.AsyncClient(base_url=hub.url, headers=headers) as client:
        created = await client.post(
            "/v1/uploads", json={"size": len(data), "filename": "big.bin", "sha256": whole}
        )
        assert created.status_code == 201, created.text
        upload = created.json()
        assert upload["offset"] == 0 and created.headers["location"].endswith(upload["id"])
        path = f"/v1/uploads/{upload['id']}"

        sent = await client.patch(
            path,
            content=data[:half],
            headers={"Upload-Offset": "0", "Upload-Checksum": checksum(data[:half])},
        )
        assert sent.status_code == 204, sent.text
        assert sent.headers["upload-offset"] == str(half)

        corrupted = await client.patch(
            path,
            content=b"x" + data[half + 1 :],
            headers={"Upload-Offset": str(half), "Upload-Checksum": checksum(data[half:])},
        )
        assert corrupted.status_code == 422
        assert corrupted.json()["error"]["field"] == "checksum"

        stands = await client.head(path)
        assert stands.headers["upload-offset"] == str(half)
        assert stands.headers["upload-length"] == str(len(data))
        early = await client.post(f"{path}/complete")
        assert early.status_code == 422 and "send the rest" in early.text
        wrong = await client.patch(path, content=data[half:], headers={"Upload-Offset": "0"})
        assert wrong.status_code == 409 and f"at offset {half}, not 0" in wrong.text
        assert wrong.json()["error"]["code"] == "upload_conflict"

        rest = await client.patch(path, content=data[half:], headers={"Upload-Offset": str(half)})
        assert rest.headers["upload-offset"] == str(len(data))
        done = await client.post(f"{path}/complete")
        assert done.status_code == 201, done.text
        assert done.json()["sha256"] == whole and done.json()["size"] == len(data)
        assert (await client.get(path)).status_code == 404

        bad = await client.patch(path, content=b"x", headers={"Upload-Offset": "0"})
        assert bad.status_code == 404
    async with hub.services.media.store.open(hub.settings.DEFAULT_TENANT, done.json()["id"]) as (
        _,
        handle,
    ):
        assert hashlib.sha256(handle.read()).hexdigest() == whole


async def test_a_patch_while_another_is_receiving_gets_409(hub: Hub) -> None:
    data = os.urandom(512 * KIB)
    headers = {"Authorization": f"Bearer {hub.admin_key}"}
    go_on = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield data[: 256 * KIB]
        await go_on.wait()
        yield data[256 * KIB :]

    async with httpx.AsyncClient(base_url=hub.url, headers=headers, timeout=30) as client:
        made = await client.post("/v1/uploads", json={"size": len(data), "filename": "r.bin"})
        path = f"/v1/uploads/{made.json()['id']}"
        first = asyncio.create_task(
            client.patch(path, content=slow_body(), headers={"Upload-Offset": "0"})
        )

        async def receiving() -> bool:  # the first PATCH's bytes are arriving: it holds it
            return await holding(hub, made.json()["id"])

        await until(receiving, "the first PATCH holding the upload")
        assert (await client.head(path)).headers["upload-offset"] == "0", "not kept yet"
        loser = await client.patch(path, content=data, headers={"Upload-Offset": "0"})
        assert loser.status_code == 409, loser.text
        assert loser.json()["error"]["code"] == "upload_conflict"
        assert "receiving another chunk" in loser.json()["error"]["message"]
        go_on.set()
        won = await first
        assert won.status_code == 204 and won.headers["upload-offset"] == str(len(data))
        done = await client.post(f"{path}/complete")
        assert done.json()["sha256"] == hashlib.sha256(data).hexdigest()


async def test_an_idle_upload_expires_and_the_housekeeping_sweeps_it(
    hub: Hub, clock: Clock
) -> None:
    headers = {"Authorization": f"Bearer {hub.admin_key}"}
    async with httpx.AsyncClient(base_url=hub.url, headers=headers) as client:
        idle = (await client.post("/v1/uploads", json={"size": 10})).json()["id"]
        fresh = (await client.post("/v1/uploads", json={"size": 10})).json()["id"]
        patched = await client.patch(
            f"/v1/uploads/{idle}", content=b"12345", headers={"Upload-Offset": "0"}
        )
        assert patched.status_code == 204
        clock.ahead += 23 * 3600
        assert (
            await client.patch(f"/v1/uploads/{fresh}", content=b"1", headers={"Upload-Offset": "0"})
        ).status_code == 204
        clock.ahead += 3600 + 1  # idle: 24 h and a second since its last chunk; fresh: 1 h

        answer = await client.get(f"/v1/uploads/{idle}")
        assert answer.status_code == 404
        assert "expired" in answer.json()["error"]["message"]
        assert "create a new upload" in answer.json()["error"]["message"]

        assert staged_bytes(hub, idle) and staged_bytes(hub, fresh)
        await housekeep(hub)
        assert not staged_bytes(hub, idle) and staged_bytes(hub, fresh)
        scrape = (await client.get("/metrics")).text
        assert "chat4all_uploads_expired_total 1.0" in scrape
        gone = await client.patch(
            f"/v1/uploads/{idle}", content=b"6", headers={"Upload-Offset": "5"}
        )
        assert gone.status_code == 404
        assert "expired" in gone.json()["error"]["message"]
        assert (await client.get(f"/v1/uploads/{fresh}")).json()["offset"] == 1


# ---- gRPC ----


def chunk_messages(
    data: bytes, size: int, upload_id: str, offset: int
) -> list[pb.AppendUploadRequest]:
    """``data`` as AppendUpload messages of ``size`` bytes, each with its sha256."""
    messages = [
        pb.AppendUploadRequest(
            data=data[start : start + size],
            sha256=hashlib.sha256(data[start : start + size]).hexdigest(),
        )
        for start in range(0, len(data), size)
    ]
    messages[0].upload_id, messages[0].offset = upload_id, offset
    return messages


async def test_a_grpc_upload_interrupted_mid_stream_resumes_and_arrives_whole(hub: Hub) -> None:
    data = os.urandom(3 * 1024 * KIB + 7)
    whole = hashlib.sha256(data).hexdigest()
    chunk = 256 * KIB
    key = (("authorization", f"Bearer {hub.admin_key}"),)
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        stub = pb_grpc.Chat4AllServiceStub(channel)
        made = await stub.CreateUpload(
            pb.CreateUploadRequest(size=len(data), filename="big.bin", sha256=whole),
            metadata=key,
        )
        upload = made.upload
        assert (upload.offset, upload.size, upload.filename) == (0, len(data), "big.bin")

        async def where() -> int:
            got = await stub.GetUpload(pb.GetUploadRequest(upload_id=upload.id), metadata=key)
            return got.upload.offset

        # Four chunks, then the client hangs and goes away.
        never = asyncio.Event()

        async def four_then_hang() -> AsyncIterator[pb.AppendUploadRequest]:
            for message in chunk_messages(data[: 4 * chunk], chunk, upload.id, 0):
                yield message
            await never.wait()

        call = stub.AppendUpload(four_then_hang(), metadata=key)

        async def four_kept() -> bool:
            return await where() == 4 * chunk

        await until(four_kept, "four chunks kept while the stream is open")
        second = stub.AppendUpload(iter(chunk_messages(data, chunk, upload.id, 0)), metadata=key)
        with pytest.raises(grpc.aio.AioRpcError) as busy:
            await second
        assert busy.value.code() == grpc.StatusCode.ABORTED
        assert "receiving another chunk" in str(busy.value.details())
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

        async def released() -> bool:  # the server saw the disconnect: the lock is free
            probe = stub.AppendUpload(
                iter([pb.AppendUploadRequest(upload_id=upload.id, offset=0)]), metadata=key
            )
            try:
                await probe
            except grpc.aio.AioRpcError as exc:
                return "receiving another chunk" not in str(exc.details())
            return False

        await until(released, "the cancelled stream's end on the server")
        assert await where() == 4 * chunk, "what arrived whole before the disconnect stays"

        # A stream with a corrupt chunk keeps the chunks before it.
        resumed = chunk_messages(data[4 * chunk :], chunk, upload.id, 4 * chunk)
        resumed[2].sha256 = hashlib.sha256(b"not it").hexdigest()
        with pytest.raises(grpc.aio.AioRpcError) as corrupt:
            await stub.AppendUpload(iter(resumed), metadata=key)
        assert corrupt.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str(corrupt.value.details()).startswith("checksum: ")
        assert f"offset {6 * chunk}" in str(corrupt.value.details())
        assert await where() == 6 * chunk

        with pytest.raises(grpc.aio.AioRpcError) as stale:
            await stub.AppendUpload(iter(chunk_messages(data, chunk, upload.id, 0)), metadata=key)
        assert stale.value.code() == grpc.StatusCode.ABORTED
        assert f"at offset {6 * chunk}, not 0" in str(stale.value.details())
        with pytest.raises(grpc.aio.AioRpcError) as early:
            await stub.CompleteUpload(pb.CompleteUploadRequest(upload_id=upload.id), metadata=key)
        assert early.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        rest = chunk_messages(data[6 * chunk :], chunk, upload.id, 6 * chunk)
        sent = await stub.AppendUpload(iter(rest), metadata=key)
        assert sent.offset == len(data)
        done = await stub.CompleteUpload(
            pb.CompleteUploadRequest(upload_id=upload.id), metadata=key
        )
        assert (done.media.sha256, done.media.size) == (whole, len(data))
        with pytest.raises(grpc.aio.AioRpcError) as finished:
            await where()
        assert finished.value.code() == grpc.StatusCode.NOT_FOUND
    async with hub.services.media.store.open(hub.settings.DEFAULT_TENANT, done.media.id) as (
        _,
        handle,
    ):
        assert hashlib.sha256(handle.read()).hexdigest() == whole


async def test_grpc_uploads_are_their_tenants_alone_and_refused_alike(hub: Hub) -> None:
    assert hub.admin_key
    stranger, _ = await hub.keys.create("tenant-b", Role.ADMIN)
    reader, _ = await hub.keys.create("default", Role.READER)

    def key(k: str) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {k}"),)

    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        stub = pb_grpc.Chat4AllServiceStub(channel)
        mine = (
            await stub.CreateUpload(
                pb.CreateUploadRequest(size=3, filename="a.txt"), metadata=key(hub.admin_key)
            )
        ).upload
        calls = {
            "GetUpload": lambda k: stub.GetUpload(
                pb.GetUploadRequest(upload_id=mine.id), metadata=key(k)
            ),
            "AppendUpload": lambda k: stub.AppendUpload(
                iter([pb.AppendUploadRequest(upload_id=mine.id, offset=0, data=b"b's")]),
                metadata=key(k),
            ),
            "CompleteUpload": lambda k: stub.CompleteUpload(
                pb.CompleteUploadRequest(upload_id=mine.id), metadata=key(k)
            ),
        }
        methods = pb.DESCRIPTOR.services_by_name["Chat4AllService"].methods
        on_an_upload = {m.name for m in methods if "upload_id" in m.input_type.fields_by_name}
        assert set(calls) == on_an_upload, "a new RPC on an upload needs its cross-tenant check"
        for name, call in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as theirs:
                await call(stranger)
            assert theirs.value.code() == grpc.StatusCode.NOT_FOUND, name
            with pytest.raises(grpc.aio.AioRpcError) as read_only:
                await call(reader)
            assert read_only.value.code() == grpc.StatusCode.PERMISSION_DENIED, name
        got = await stub.GetUpload(
            pb.GetUploadRequest(upload_id=mine.id), metadata=key(hub.admin_key)
        )
        assert got.upload.offset == 0, "nothing of the stranger's reached it"
        for bad, field in (
            (pb.CreateUploadRequest(size=0), "size"),
            (pb.CreateUploadRequest(size=5 * 1024 * KIB), "file"),
            (pb.CreateUploadRequest(size=5, sha256="xyz"), "sha256"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CreateUpload(bad, metadata=key(hub.admin_key))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert str(refused.value.details()).startswith(f"{field}: ")
        with pytest.raises(grpc.aio.AioRpcError) as nameless:
            await stub.AppendUpload(
                iter([pb.AppendUploadRequest(data=b"x")]), metadata=key(hub.admin_key)
            )
        assert nameless.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str(nameless.value.details()).startswith("upload_id: ")
