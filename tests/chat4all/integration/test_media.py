"""Media by upload, end to end: POST /v1/media (multipart), a message with the media_id, and
the Bot API simulator receiving the very bytes (SHA-256) through sendPhoto / sendDocument."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from chat4all.adapters.channels.telegram.simulator import Sent
from chat4all.bootstrap import SIMULATOR_ACCOUNT, Hub
from chat4all.domain.access import Role
from tests.chat4all.channels.telegram_hub import telegram_of
from tests.chat4all.conftest import hub_running

MIB = 1024 * 1024
MAX = 11 * MIB
"""The hub's CHAT4ALL_MEDIA_MAX_BYTES here: above Telegram's 10 MB photo limit."""


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with hub_running(tmp_path, MEDIA_MAX_BYTES=MAX) as running:
        yield running


def auth(key: str | None) -> dict[str, str]:
    assert key
    return {"Authorization": f"Bearer {key}"}


def message_with(*attachments: dict[str, Any], recipient: str = "42") -> dict[str, Any]:
    return {
        "channel": "telegram",
        "account": SIMULATOR_ACCOUNT,
        "recipient": recipient,
        "content": {"attachments": list(attachments)},
    }


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def delivered(hub: Hub, method: str) -> Sent:
    simulator = telegram_of(hub)
    await until(lambda: any(s.method == method for s in simulator.sent))
    return next(s for s in simulator.sent if s.method == method)


def jpeg(path: Path) -> bytes:
    """A real JPEG, made by ffmpeg from its test pattern (nothing downloaded)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=1"),
            *("-frames:v", "1", "-y", str(path)),
        ],
        check=True,
        timeout=30,
    )
    return path.read_bytes()


def stored_files(hub_dir: Path) -> list[Path]:
    return [p for p in (hub_dir / "media").rglob("*") if p.is_file()]


@pytest.mark.ffmpeg
async def test_an_uploaded_photo_reaches_telegram_byte_for_byte(hub: Hub, tmp_path: Path) -> None:
    photo = jpeg(tmp_path / "cat.jpg")
    async with httpx.AsyncClient(base_url=hub.url, headers=auth(hub.admin_key)) as client:
        answer = await client.post("/v1/media", files={"file": ("cat.jpg", photo, "image/jpeg")})
        assert answer.status_code == 201, answer.text
        media = answer.json()
        assert media == {
            "id": media["id"],
            "filename": "cat.jpg",
            "mime_type": "image/jpeg",
            "size": len(photo),
            "sha256": hashlib.sha256(photo).hexdigest(),
            "kind": "image",
        }
        assert media["id"].startswith("md_")
        body = message_with({"media_id": media["id"], "caption": "a cat"})
        body["content"]["buttons"] = [{"title": "Like", "payload": "like"}]
        accepted = await client.post("/v1/messages", json=body)
        assert accepted.status_code == 202, accepted.text
        attachment = accepted.json()["content"]["attachments"][0]
        assert attachment["media_id"] == media["id"]
        assert (attachment["kind"], attachment["url"]) == ("image", None)
        sent = await delivered(hub, "sendPhoto")
        upload = sent.files["photo"]
        assert (upload.sha256, upload.size) == (media["sha256"], len(photo))
        assert (upload.filename, upload.content_type) == ("cat.jpg", "image/jpeg")
        assert sent.body["chat_id"] == "42"
        assert sent.body["caption"] == "a cat"
        assert sent.body["reply_markup"] == {
            "inline_keyboard": [[{"text": "Like", "callback_data": "like"}]]
        }
        for _ in range(100):
            got = (await client.get(f"/v1/messages/{accepted.json()['id']}")).json()
            if got["status"] == "sent":
                break
            await asyncio.sleep(0.02)
        assert got["status"] == "sent"


async def test_a_document_uploaded_in_chunks_goes_by_send_document(hub: Hub) -> None:
    data = os.urandom(3 * MIB + 12345)  # several network chunks and flushes

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: only streaming stops it
        boundary = b"--b0undary"
        yield boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="r.bin"\r\n'
        yield b"Content-Type: application/octet-stream\r\n\r\n"
        for start in range(0, len(data), 100_000):
            yield data[start : start + 100_000]
        yield b"\r\n" + boundary + b'\r\nContent-Disposition: form-data; name="kind"\r\n\r\n'
        yield b"document\r\n" + boundary + b"--\r\n"

    headers = {**auth(hub.admin_key), "Content-Type": "multipart/form-data; boundary=b0undary"}
    async with httpx.AsyncClient(base_url=hub.url, headers=auth(hub.admin_key)) as client:
        answer = await client.post("/v1/media", content=chunked(), headers=headers)
        assert answer.status_code == 201, answer.text
        media = answer.json()
        assert media["kind"] == "document"  # the kind came after the file
        assert media["mime_type"] == "application/octet-stream"
        assert media["sha256"] == hashlib.sha256(data).hexdigest()
        accepted = await client.post(
            "/v1/messages", json=message_with({"media_id": media["id"], "filename": "report.bin"})
        )
        assert accepted.status_code == 202, accepted.text
    sent = await delivered(hub, "sendDocument")
    assert sent.files["document"].sha256 == hashlib.sha256(data).hexdigest()
    assert sent.files["document"].filename == "report.bin"  # the message's name wins


async def test_the_same_bytes_are_stored_once_per_tenant(hub: Hub, tmp_path: Path) -> None:
    other, _ = await hub.keys.create("tenant-b", Role.SENDER)
    data = b"%PDF-1.4 not really\n" * 100
    ids = []
    async with httpx.AsyncClient(base_url=hub.url) as client:
        for key in (hub.admin_key, hub.admin_key, other):
            answer = await client.post(
                "/v1/media", files={"file": ("a.pdf", data)}, headers=auth(key)
            )
            assert answer.status_code == 201, answer.text
            assert answer.json()["mime_type"] == "application/pdf"  # guessed from the name
            assert answer.json()["kind"] == "document"
            ids.append(answer.json()["id"])
    assert len(set(ids)) == 3
    files = stored_files(tmp_path)
    assert len(files) == 2  # one per tenant
    assert {f.read_bytes() for f in files} == {data}


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_upload_over_the_limit_is_refused_and_nothing_is_kept(
    hub: Hub, tmp_path: Path, declared: bool
) -> None:
    data = b"x" * (MAX + 1)
    async with httpx.AsyncClient(base_url=hub.url, headers=auth(hub.admin_key)) as client:
        if declared:
            answer = await client.post("/v1/media", files={"file": ("big.bin", data)})
        else:
            request = client.build_request("POST", "/v1/media", files={"file": ("big.bin", data)})

            async def stream() -> AsyncIterator[bytes]:
                async for chunk in request.stream:  # type: ignore[union-attr]
                    yield chunk

            del request.headers["Content-Length"]
            answer = await client.post("/v1/media", content=stream(), headers=request.headers)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["field"] == "file"
    assert "11 MB" in error["message"]
    assert "CHAT4ALL_MEDIA_MAX_BYTES" in error["message"]
    assert stored_files(tmp_path) == []


async def test_bad_uploads_get_422_naming_the_field(hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=hub.url, headers=auth(hub.admin_key)) as client:
        empty = await client.post("/v1/media", files={"file": ("e.txt", b"")})
        missing = await client.post("/v1/media", files={"other": ("x.txt", b"x")})
        as_json = await client.post("/v1/media", json={"file": "x"})
        two = await client.post(
            "/v1/media", files=[("file", ("a.txt", b"a")), ("file", ("b.txt", b"b"))]
        )
        bad_kind = await client.post(
            "/v1/media", data={"kind": "sticker"}, files={"file": ("x.png", b"x")}
        )
    assert empty.status_code == 422
    assert empty.json()["error"] == {
        "code": "invalid_argument",
        "message": "the file is empty",
        "field": "file",
    }
    assert (missing.status_code, missing.json()["error"]["field"]) == (422, "other")
    assert (as_json.status_code, as_json.json()["error"]["field"]) == (422, "file")
    assert "multipart/form-data" in as_json.json()["error"]["message"]
    assert (bad_kind.status_code, bad_kind.json()["error"]["field"]) == (422, "kind")
    assert two.status_code == 422
    assert two.json()["error"] == {
        "code": "invalid_argument",
        "message": "one file per upload",
        "field": "file",
    }


async def test_a_form_without_the_file_part_is_refused(hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=hub.url, headers=auth(hub.admin_key)) as client:
        answer = await client.post(
            "/v1/media",
            content=b'--b\r\nContent-Disposition: form-data; name="kind"\r\n\r\nimage\r\n--b--\r\n',
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "file"
    assert answer.json()["error"]["message"].startswith("no file")


async def test_a_photo_over_telegrams_10_mb_is_refused_at_send_but_goes_as_a_document(
    hub: Hub,
) -> None:
    data = b"\xff\xd8\xff" + os.urandom(10 * MIB)  # 10 MB and 3 bytes
    async with httpx.AsyncClient(
        base_url=hub.url, headers=auth(hub.admin_key), timeout=30
    ) as client:
        answer = await client.post("/v1/media", files={"file": ("big.jpg", data, "image/jpeg")})
        assert answer.status_code == 201, answer.text
        media = answer.json()
        assert media["kind"] == "image"
        as_photo = await client.post("/v1/messages", json=message_with({"media_id": media["id"]}))
        assert as_photo.status_code == 422
        error = as_photo.json()["error"]
        assert error["field"] == "content.attachments[0].kind"
        assert "photos up to 10 MB" in error["message"]
        as_document = await client.post(
            "/v1/messages", json=message_with({"media_id": media["id"], "kind": "document"})
        )
        assert as_document.status_code == 202, as_document.text
    sent = await delivered(hub, "sendDocument")
    assert sent.files["document"].sha256 == media["sha256"]
    assert [s.method for s in telegram_of(hub).sent] == ["sendDocument"]


async def test_a_tenant_cannot_send_another_tenants_media(hub: Hub) -> None:
    other, _ = await hub.keys.create("tenant-b", Role.SENDER)
    async with httpx.AsyncClient(base_url=hub.url) as client:
        mine = (
            await client.post(
                "/v1/media", files={"file": ("x.png", b"\x89PNG...")}, headers=auth(hub.admin_key)
            )
        ).json()
        theirs = await client.post(
            "/v1/messages", json=message_with({"media_id": mine["id"]}), headers=auth(other)
        )
        unknown = await client.post(
            "/v1/messages", json=message_with({"media_id": "md_nope"}), headers=auth(other)
        )
        listed = (await client.get("/v1/conversations", headers=auth(other))).json()["items"]
    assert theirs.status_code == 422
    assert theirs.json()["error"]["field"] == "content.attachments[0].media_id"
    assert "upload the file first" in theirs.json()["error"]["message"]
    # Another tenant's id reads exactly as one that does not exist.
    assert theirs.json()["error"]["message"].replace(mine["id"], "ID") == unknown.json()["error"][
        "message"
    ].replace("md_nope", "ID")
    assert listed == []
    await asyncio.sleep(0.2)
    assert telegram_of(hub).sent == []


async def test_an_attachment_is_a_url_or_a_media_id(hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=hub.url, headers=auth(hub.admin_key)) as client:
        media = (await client.post("/v1/media", files={"file": ("x.txt", b"hello")})).json()
        both = await client.post(
            "/v1/messages",
            json=message_with({"media_id": media["id"], "url": "https://example.org/x.txt"}),
        )
        neither = await client.post("/v1/messages", json=message_with({"caption": "?"}))
        by_url = await client.post(
            "/v1/messages", json=message_with({"url": "https://example.org/x.txt"})
        )
    assert (both.status_code, both.json()["error"]["field"]) == (422, "content.attachments[0]")
    assert (neither.status_code, neither.json()["error"]["field"]) == (
        422,
        "content.attachments[0]",
    )
    assert by_url.status_code == 202
    assert by_url.json()["content"]["attachments"][0]["kind"] == "document"
    sent = await delivered(hub, "sendDocument")
    assert sent.body["document"] == "https://example.org/x.txt"
    assert sent.files == {}


async def test_only_senders_upload(hub: Hub) -> None:
    reader, _ = await hub.keys.create("default", Role.READER)
    sender, _ = await hub.keys.create("default", Role.SENDER)
    async with httpx.AsyncClient(base_url=hub.url) as client:
        anonymous = await client.post("/v1/media", files={"file": ("x.txt", b"x")})
        as_reader = await client.post(
            "/v1/media", files={"file": ("x.txt", b"x")}, headers=auth(reader)
        )
        as_sender = await client.post(
            "/v1/media", files={"file": ("x.txt", b"x")}, headers=auth(sender)
        )
    assert (anonymous.status_code, as_reader.status_code, as_sender.status_code) == (401, 403, 201)
