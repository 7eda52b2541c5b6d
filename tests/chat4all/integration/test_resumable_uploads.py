"""A resumable upload over REST, end to end through the hub: create, PATCH chunks at their
offsets with their checksums, a chunk cut off by a disconnect, HEAD for the offset, the rest,
complete; the media then has the file's sha256 and its bytes."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from chat4all.bootstrap import Hub
from tests.chat4all.conftest import hub_running


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with hub_running(tmp_path) as running:
        yield running


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
        assert wrong.status_code == 422 and f"at offset {half}" in wrong.text

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
