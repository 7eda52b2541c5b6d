"""The Telegram connector against the Bot API simulator over HTTP: shapes and error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest

from chat4all.adapters.channels.telegram import TelegramConnector
from chat4all.adapters.channels.telegram.simulator import TelegramSimulator
from chat4all.adapters.storage.media import FileMediaStore
from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import (
    Attachment,
    Button,
    Content,
    Conversation,
    DeliveryStatus,
    Location,
    Media,
    Message,
)
from chat4all.errors import PermanentDelivery, RetryableDelivery, StoreUnavailable

TOKEN = "123456:test-token"
CONVERSATION = Conversation("c1", "t1", "telegram", "bot", "42")


def message(content: Content) -> Message:
    return Message("m1", "t1", "c1", 1, "outbound", content, DeliveryStatus.QUEUED, 0.0)


@pytest.fixture
async def sim() -> AsyncIterator[tuple[TelegramSimulator, TelegramConnector]]:
    simulator = TelegramSimulator(tokens={TOKEN})
    async with simulator.running() as url:
        connector = TelegramConnector({"bot": TOKEN}, api_url=url)
        try:
            yield simulator, connector
        finally:
            await connector.close()


async def test_text_media_location_and_buttons_use_the_documented_methods(
    sim: tuple[TelegramSimulator, TelegramConnector],
) -> None:
    simulator, connector = sim
    content = Content(
        text="look",
        attachments=(Attachment("https://example.org/a.jpg", "image", caption="a cat"),),
        location=Location(51.5, -0.12),
        buttons=(Button("Yes", payload="y"), Button("Site", url="https://example.org")),
    )
    provider_id = await connector.send(CONVERSATION, message(content))
    methods = [(s.method, s.body) for s in simulator.sent]
    assert [m for m, _ in methods] == ["sendMessage", "sendPhoto", "sendLocation"]
    assert methods[0][1] == {"chat_id": "42", "text": "look"}
    assert methods[1][1]["photo"] == "https://example.org/a.jpg"
    assert methods[1][1]["caption"] == "a cat"
    keyboard = methods[1][1]["reply_markup"]["inline_keyboard"][0]
    assert keyboard == [
        {"text": "Yes", "callback_data": "y"},
        {"text": "Site", "url": "https://example.org"},
    ]
    assert provider_id == "1"


@pytest.mark.parametrize(
    ("arrange", "error", "retry_after"),
    [
        (lambda s: s.throttle(retry_after=7), RetryableDelivery, 7.0),
        (lambda s: s.fail(500), RetryableDelivery, None),
        (lambda s: s.blocked.add("42"), PermanentDelivery, None),
    ],
)
async def test_errors_are_classified_as_the_bot_api_documents_them(
    sim: tuple[TelegramSimulator, TelegramConnector],
    arrange: object,
    error: type[Exception],
    retry_after: float | None,
) -> None:
    simulator, connector = sim
    arrange(simulator)  # type: ignore[operator]
    with pytest.raises(error) as raised:
        await connector.send(CONVERSATION, message(Content(text="hi")))
    if retry_after is not None:
        assert raised.value.retry_after == retry_after  # type: ignore[attr-defined]
    assert simulator.sent == []


async def test_a_wrong_token_and_an_unknown_account_are_permanent(
    sim: tuple[TelegramSimulator, TelegramConnector],
) -> None:
    _simulator, connector = sim
    wrong = TelegramConnector({"bot": "999:wrong"}, api_url=connector.api_url)
    try:
        with pytest.raises(PermanentDelivery, match="401"):
            await wrong.send(CONVERSATION, message(Content(text="hi")))
    finally:
        await wrong.close()
    other = Conversation("c2", "t1", "telegram", "unknown-bot", "42")
    with pytest.raises(PermanentDelivery, match="no bot token"):
        await connector.send(other, message(Content(text="hi")))


async def test_an_unreachable_api_is_retryable() -> None:
    connector = TelegramConnector({"bot": TOKEN}, api_url="http://127.0.0.1:1", timeout=2)
    try:
        with pytest.raises(RetryableDelivery):
            await connector.send(CONVERSATION, message(Content(text="hi")))
    finally:
        await connector.close()


async def of(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.parametrize(
    ("kind", "method", "field"),
    [
        ("image", "sendPhoto", "photo"),
        ("document", "sendDocument", "document"),
        ("video", "sendVideo", "video"),
        ("audio", "sendAudio", "audio"),
    ],
)
async def test_an_upload_goes_as_multipart_with_its_bytes(
    store: SqlStore, tmp_path: Path, kind: str, method: str, field: str
) -> None:
    files = FileMediaStore(store, tmp_path / "media")
    data = bytes(range(256)) * 1000
    media = await files.put(
        "t1", of(data), filename="f.bin", mime_type="application/x-test", kind=kind, now=0.0
    )
    simulator = TelegramSimulator(tokens={TOKEN})
    async with simulator.running() as url:
        connector = TelegramConnector({"bot": TOKEN}, api_url=url, media=files)
        try:
            content = Content(
                text="first",
                attachments=(Attachment(kind=kind, caption="cap", media_id=media.id),),
                buttons=(Button("Ok", payload="ok"),),
            )
            await connector.send(CONVERSATION, message(content))
        finally:
            await connector.close()
    text, upload = simulator.sent
    assert (text.method, upload.method) == ("sendMessage", method)
    assert upload.files[field].sha256 == hashlib.sha256(data).hexdigest()
    assert upload.files[field].size == len(data)
    assert (upload.files[field].filename, upload.files[field].content_type) == (
        "f.bin",
        "application/x-test",
    )
    assert upload.body == {
        "chat_id": "42",
        "caption": "cap",
        "reply_markup": {"inline_keyboard": [[{"text": "Ok", "callback_data": "ok"}]]},
    }


async def test_an_upload_whose_file_is_gone_fails_for_good(
    store: SqlStore, tmp_path: Path, sim: tuple[TelegramSimulator, TelegramConnector]
) -> None:
    simulator, connector = sim
    files = FileMediaStore(store, tmp_path / "media")
    media = await files.put("t1", of(b"x"), filename="x", mime_type="a/b", kind="image", now=0.0)
    for path in (tmp_path / "media").rglob(media.sha256):
        path.unlink()
    with_media = TelegramConnector({"bot": TOKEN}, api_url=connector.api_url, media=files)
    try:
        with pytest.raises(PermanentDelivery, match="no file"):
            await with_media.send(
                CONVERSATION,
                message(Content(attachments=(Attachment(kind="image", media_id=media.id),))),
            )
        with pytest.raises(PermanentDelivery, match="no media store"):
            await connector.send(
                CONVERSATION,
                message(Content(attachments=(Attachment(kind="image", media_id=media.id),))),
            )
    finally:
        await with_media.close()
    assert simulator.sent == []


async def test_the_simulator_refuses_a_media_call_without_its_file(
    sim: tuple[TelegramSimulator, TelegramConnector],
) -> None:
    simulator, connector = sim
    async with httpx.AsyncClient(base_url=connector.api_url) as client:
        multipart = await client.post(
            f"/bot{TOKEN}/sendPhoto", data={"chat_id": "42"}, files={"document": ("x", b"x")}
        )
        as_json = await client.post(f"/bot{TOKEN}/sendDocument", json={"chat_id": "42"})
    assert multipart.status_code == 400
    assert multipart.json() == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: there is no photo in the request",
    }
    assert as_json.json()["description"] == "Bad Request: there is no document in the request"
    assert simulator.sent == []


async def test_a_retry_sends_only_the_parts_that_did_not_arrive(
    sim: tuple[TelegramSimulator, TelegramConnector],
) -> None:
    simulator, connector = sim
    content = Content(
        text="caption first",
        attachments=(Attachment("https://example.org/a.jpg", "image"),),
        location=Location(1.0, 2.0),
    )
    simulator.fail(500, method="sendPhoto")
    with pytest.raises(RetryableDelivery) as first:
        await connector.send(CONVERSATION, message(content))
    assert len(first.value.done) == 1  # the text arrived
    provider_id = await connector.send(CONVERSATION, message(content), first.value.done)
    assert provider_id == first.value.done[0]  # the message's id is its first part's
    assert [s.method for s in simulator.sent] == ["sendMessage", "sendPhoto", "sendLocation"]


async def test_a_caller_gone_mid_request_is_not_served_and_leaves_no_traceback(
    sim: tuple[TelegramSimulator, TelegramConnector], caplog: pytest.LogCaptureFixture
) -> None:
    """A hub killed mid-request: the simulator does nothing with the half a request, quietly."""
    simulator, connector = sim
    url = httpx.URL(connector.api_url)
    _, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        f"POST /bot{TOKEN}/sendMessage HTTP/1.1\r\nHost: sim\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        '{"chat_id": "42", "te'.encode()
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    async with asyncio.timeout(10):
        while not simulator.abandoned:
            await asyncio.sleep(0.01)
    assert simulator.sent == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


class UnreachableBucket:
    """A media store whose backend cannot answer now (an S3 bucket unreachable)."""

    async def put(self, *args: object, **kwargs: object) -> Media:
        raise StoreUnavailable("the media bucket cannot be reached")

    async def get(self, tenant: str, media_id: str) -> Media:
        raise StoreUnavailable("the media bucket cannot be reached")

    @contextlib.asynccontextmanager
    async def open(self, tenant: str, media_id: str) -> AsyncIterator[tuple[Media, BinaryIO]]:
        raise StoreUnavailable("the media bucket cannot be reached")
        yield  # an async generator (never reached)


async def test_a_media_store_that_cannot_answer_is_a_retry_after_the_parts_sent() -> None:
    """The bucket is down while a message's file is read: the message is retried later from
    its file (the text that went out is not sent again), not failed and not an adapter crash."""
    simulator = TelegramSimulator(tokens={TOKEN})
    async with simulator.running() as url:
        connector = TelegramConnector({"bot": TOKEN}, api_url=url, media=UnreachableBucket())
        try:
            content = Content(
                text="first", attachments=(Attachment(kind="document", media_id="md_1"),)
            )
            with pytest.raises(RetryableDelivery) as caught:
                await connector.send(CONVERSATION, message(content))
        finally:
            await connector.close()
    [text] = simulator.sent
    assert (text.method, text.body["text"]) == ("sendMessage", "first")
    assert caught.value.done == (str(text.message_id),)
    assert "the media bucket cannot be reached" in str(caught.value)
    assert caught.value.retry_after == StoreUnavailable.retry_after
