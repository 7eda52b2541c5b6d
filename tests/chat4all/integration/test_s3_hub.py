"""A hub whose media live in an S3 bucket (moto's server), end to end: a resumable upload over
REST finishes into the bucket (a multipart upload, nothing kept on the local disk), its signed
link serves it from there, and a message carrying it reaches the Bot API simulator with the very
bytes; the bucket's credentials never show. A bucket that is not there stops the start with exit
3 and the setting to correct; without the s3 extra, exit 2."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from chat4all.adapters.storage.sql import SqlStore
from chat4all.bootstrap import SIMULATOR_ACCOUNT, Hub, open_media_store
from chat4all.cli import serve_hub
from chat4all.config import load_settings
from chat4all.errors import InvalidRequest
from chat4all.service_layer.media_links import LINK_PATH
from tests.chat4all.conftest import hub_running
from tests.chat4all.integration.test_media import delivered
from tests.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

MIB = 1024 * 1024
PUBLIC = "https://media.example.org"
LINK_SECRET = "link-secret-for-the-tests"


def s3_settings(endpoint: str, bucket: str) -> dict[str, Any]:
    return {
        "MEDIA_BACKEND": "s3",
        "S3_ENDPOINT_URL": endpoint,
        "S3_BUCKET": bucket,
        "S3_REGION": REGION,
        "S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "S3_PREFIX": "hub",
    }


@pytest.fixture
async def hub(tmp_path: Path, s3_endpoint: str, bucket: str) -> AsyncIterator[Hub]:
    async with hub_running(
        tmp_path,
        MEDIA_LINK_SECRET=LINK_SECRET,
        MEDIA_PUBLIC_URL=PUBLIC,
        **s3_settings(s3_endpoint, bucket),
    ) as running:
        yield running


def checksum(data: bytes) -> str:
    return "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode()


async def test_a_resumable_upload_lands_in_the_bucket_and_is_served_and_sent_from_there(
    hub: Hub,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = os.urandom(12 * MIB + 5)  # two parts of the default 8 MiB
    whole = hashlib.sha256(data).hexdigest()
    tenant = hub.settings.DEFAULT_TENANT
    assert hub.admin_key
    headers = {"Authorization": f"Bearer {hub.admin_key}"}
    async with httpx.AsyncClient(base_url=hub.url, headers=headers, timeout=30) as client:
        created = await client.post(
            "/v1/uploads", json={"size": len(data), "filename": "big.bin", "sha256": whole}
        )
        assert created.status_code == 201, created.text
        path = f"/v1/uploads/{created.json()['id']}"
        for start, end in ((0, 5 * MIB), (5 * MIB, len(data))):
            sent = await client.patch(
                path,
                content=data[start:end],
                headers={"Upload-Offset": str(start), "Upload-Checksum": checksum(data[start:end])},
            )
            assert sent.status_code == 204, sent.text
        done = await client.post(f"{path}/complete")
        assert done.status_code == 201, done.text
        media = done.json()
        assert (media["sha256"], media["size"]) == (whole, len(data))

        # in the bucket under its content address; no part left open, nothing on the disk
        listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        assert [(o["Key"], o["Size"]) for o in listed] == [
            (f"hub/{tenant}/{whole[:2]}/{whole}", len(data))
        ]
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        assert not [p for p in tmp_path.rglob(whole)]
        assert not (hub.settings.media_dir / ".uploads").exists(), "staged in the bucket"

        # its signed link serves it from the bucket, no key needed
        link = hub.services.media.link(tenant, media["id"]).removeprefix(PUBLIC)
        assert link.startswith(LINK_PATH)
        async with httpx.AsyncClient(base_url=hub.url, timeout=30) as public:
            fetched = await public.get(link)
        assert fetched.status_code == 200, fetched.text
        assert fetched.headers["content-length"] == str(len(data))
        assert hashlib.sha256(fetched.content).hexdigest() == whole

        # and a channel reads it from there too: the simulator gets the very bytes
        accepted = await client.post(
            "/v1/messages",
            json={
                "channel": "telegram",
                "account": SIMULATOR_ACCOUNT,
                "recipient": "42",
                "content": {"attachments": [{"media_id": media["id"]}]},
            },
        )
        assert accepted.status_code == 202, accepted.text
        upload = (await delivered(hub, "sendDocument")).files["document"]
        assert (upload.sha256, upload.size, upload.filename) == (whole, len(data), "big.bin")
    assert SECRET_ACCESS_KEY not in caplog.text
    assert SECRET_ACCESS_KEY not in repr(hub.settings)


async def test_two_api_processes_without_a_shared_disk_take_turns_on_one_upload(
    tmp_path: Path, s3_endpoint: str, s3: S3Client, bucket: str, postgres_url: str
) -> None:
    data = os.urandom(3 * MIB + 7)
    whole = hashlib.sha256(data).hexdigest()
    config = {**s3_settings(s3_endpoint, bucket), "DATABASE_URL": postgres_url, "RATE_PER_KEY": 0}
    async with (
        hub_running(tmp_path / "a", **config) as a,
        hub_running(tmp_path / "b", **config) as b,
    ):
        assert a.admin_key
        headers = {"Authorization": f"Bearer {a.admin_key}"}
        async with (
            httpx.AsyncClient(base_url=a.url, headers=headers, timeout=30) as to_a,
            httpx.AsyncClient(base_url=b.url, headers=headers, timeout=30) as to_b,
        ):
            created = await to_a.post(
                "/v1/uploads", json={"size": len(data), "filename": "big.bin", "sha256": whole}
            )
            assert created.status_code == 201, created.text
            path = f"/v1/uploads/{created.json()['id']}"
            first = await to_a.patch(path, content=data[: 2 * MIB], headers={"Upload-Offset": "0"})
            assert first.status_code == 204, first.text
            # the other process knows where it stands, and takes the rest
            assert (await to_b.head(path)).headers["upload-offset"] == str(2 * MIB)
            rest = await to_b.patch(
                path,
                content=data[2 * MIB :],
                headers={
                    "Upload-Offset": str(2 * MIB),
                    "Upload-Checksum": checksum(data[2 * MIB :]),
                },
            )
            assert rest.status_code == 204, rest.text
            done = await to_a.post(f"{path}/complete")
            assert done.status_code == 201, done.text
            assert (done.json()["sha256"], done.json()["size"]) == (whole, len(data))
            assert (await to_b.get(path)).status_code == 404
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert listed == [f"hub/{a.settings.DEFAULT_TENANT}/{whole[:2]}/{whole}"], "nothing staged"
    assert not [p for p in tmp_path.rglob("*") if ".uploads" in p.parts], "nothing on a disk"


async def test_a_missing_bucket_stops_the_start_naming_the_setting(
    tmp_path: Path, s3_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(
        None, DATA_DIR=tmp_path, PORT=0, GRPC_PORT=0, **s3_settings(s3_endpoint, "not-there")
    )
    assert await serve_hub(settings, asyncio.Event()) == 3
    said = capsys.readouterr().err
    assert "not-there" in said and "CHAT4ALL_S3_BUCKET" in said
    assert SECRET_ACCESS_KEY not in said


async def test_without_the_s3_extra_the_start_says_how_to_install_it(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "chat4all.adapters.storage.media_s3", raising=False)
    settings = load_settings(None, DATA_DIR=tmp_path, MEDIA_BACKEND="s3", S3_BUCKET="media")
    async with contextlib.AsyncExitStack() as stack:
        with pytest.raises(InvalidRequest, match=r"pip install 'tgstream-chat4all\[chat4all,s3\]'"):
            await open_media_store(settings, store, stack)
