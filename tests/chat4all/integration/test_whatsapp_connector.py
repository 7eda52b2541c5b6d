"""The WhatsApp connector against the Cloud API simulator on loopback: uploads, downloads,
mark-as-read, reactions, contacts, pacing."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat4all.adapters.channels.graph import GraphClient
from chat4all.adapters.channels.whatsapp import (
    RULES,
    SIMULATOR_NUMBER,
    SIMULATOR_TOKEN,
    WhatsAppConnector,
    WhatsAppSimulator,
)
from chat4all.adapters.channels.whatsapp.connector import Number
from chat4all.adapters.storage.media import FileMediaStore
from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import (
    Attachment,
    Contact,
    Content,
    Conversation,
    DeliveryStatus,
    Message,
    Reaction,
)
from chat4all.errors import AccountPaused, PermanentDelivery, RetryableDelivery
from chat4all.ports import Action, ActionRequest
from chat4all.simulator.host import serving
from tests.chat4all.channels.test_whatsapp_hub import until

USER = "5511999990000"


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1 << 16):
        yield data[start : start + (1 << 16)]


def jpeg(tmp_path: Path) -> bytes:
    """A real JPEG, made by ffmpeg from a lavfi test source."""
    out = tmp_path / "frame.jpg"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240",
            "-frames:v",
            "1",
            "-y",
            str(out),
        ],
        check=True,
        timeout=60,
    )
    return out.read_bytes()


def message(content: Content, n: int = 1) -> tuple[Conversation, Message]:
    conversation = Conversation("c1", "t1", "whatsapp", "sales", USER)
    return conversation, Message(
        f"m-{n}", "t1", "c1", n, "outbound", content, DeliveryStatus.QUEUED, 1.0
    )


@pytest.fixture
async def wa() -> AsyncIterator[tuple[WhatsAppSimulator, WhatsAppConnector]]:
    sim = WhatsAppSimulator({SIMULATOR_TOKEN: SIMULATOR_NUMBER}, "secret")
    async with serving(sim.app()) as url:
        client = GraphClient(url, "v26.0", where="WhatsApp", rules=RULES)
        connector = WhatsAppConnector(
            {"sales": Number(SIMULATOR_NUMBER, SIMULATOR_TOKEN, rate=80.0)},
            client,
            pair_interval=0.3,
            pace_seconds=0.05,
        )
        try:
            yield sim, connector
        finally:
            await connector.close()


async def test_an_upload_goes_to_media_first_and_the_message_names_its_id(
    wa: tuple[WhatsAppSimulator, WhatsAppConnector], store: SqlStore, tmp_path: Path
) -> None:
    sim, connector = wa
    files = FileMediaStore(store, tmp_path / "media")
    connector.media = files
    data = jpeg(tmp_path)
    media = await files.put(
        "t1", chunks(data), filename="frame.jpg", mime_type="image/jpeg", kind="image", now=0.0
    )
    content = Content(attachments=(Attachment(None, "image", caption="look", media_id=media.id),))
    await connector.send(*message(content))
    [upload] = sim.uploads.values()
    assert upload.sha256 == hashlib.sha256(data).hexdigest() and upload.mime_type == "image/jpeg"
    [body] = sim.bodies(USER)
    assert body["image"] == {"id": upload.id, "caption": "look"}
    # over WhatsApp's 5 MB for an image: refused before anything is uploaded, saying why
    big = await files.put(
        "t1",
        chunks(b"\xff" * (5 * 1024 * 1024 + 1)),
        filename="big.jpg",
        mime_type="image/jpeg",
        kind="image",
        now=0.0,
    )
    with pytest.raises(PermanentDelivery, match="at most 5120 KB"):
        await connector.send(
            *message(Content(attachments=(Attachment(None, "image", media_id=big.id),)), 2)
        )
    assert len(sim.uploads) == 1


async def test_inbound_media_is_resolved_and_downloaded_with_the_token(
    wa: tuple[WhatsAppSimulator, WhatsAppConnector], store: SqlStore, tmp_path: Path
) -> None:
    sim, connector = wa
    data = jpeg(tmp_path)
    media_id = sim.add_media(data, "image/jpeg")
    files = FileMediaStore(store, tmp_path / "media")
    media = await connector.fetch("sales", media_id, "t1", files)
    assert (media.size, media.mime_type, media.kind) == (len(data), "image/jpeg", "image")
    async with files.open("t1", media.id) as (_, stored):
        assert hashlib.sha256(stored.read()).hexdigest() == hashlib.sha256(data).hexdigest()
    with pytest.raises(PermanentDelivery, match="no such media"):
        await connector.fetch("sales", "123", "t1", files)


async def test_mark_read_reaction_and_contacts(
    wa: tuple[WhatsAppSimulator, WhatsAppConnector],
) -> None:
    sim, connector = wa
    await connector.mark_read("sales", "wamid.THEIRS", typing=True)
    assert sim.reads == [
        {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": "wamid.THEIRS",
            "typing_indicator": {"type": "text"},
        }
    ]
    react = Content(reaction=Reaction("m-0", "\U0001f44d", "wamid.THEIRS"))
    unreact = Content(reaction=Reaction("m-0", "", "wamid.THEIRS"))
    card = Contact("Ana", ("+1",), ("ana@example.org",), "ACME")
    contacts = Content(contacts=(card,), reply_to="m-0", reply_to_provider_id="wamid.THEIRS")
    for n, content in enumerate((react, unreact, contacts), start=1):
        await connector.send(*message(content, n))
    reaction, removal, shared = sim.bodies(USER)
    assert reaction["reaction"] == {"message_id": "wamid.THEIRS", "emoji": "\U0001f44d"}
    assert removal["reaction"] == {"message_id": "wamid.THEIRS", "emoji": ""}
    assert "biz_opaque_callback_data" not in reaction
    assert shared["contacts"] == [
        {
            "name": {"formatted_name": "Ana", "first_name": "Ana"},
            "phones": [{"phone": "+1"}],
            "emails": [{"email": "ana@example.org"}],
            "org": {"company": "ACME"},
        }
    ]
    assert shared["biz_opaque_callback_data"] == "m-3"
    assert shared["context"] == {"message_id": "wamid.THEIRS"}
    # a reaction to a message without a wamid cannot be sent: said, not retried
    with pytest.raises(PermanentDelivery, match="wamid"):
        await connector.send(*message(Content(reaction=Reaction("m-0", "x")), 4))


async def test_pacing_per_number_and_the_pair_hold(
    wa: tuple[WhatsAppSimulator, WhatsAppConnector],
) -> None:
    sim, connector = wa
    connector.numbers["sales"].rate = 50.0
    began = time.monotonic()
    await asyncio.gather(*(connector.send(*message(Content(text=f"{n}"), n)) for n in range(20)))
    took = time.monotonic() - began
    assert took >= 19 / 50 * 0.95, took  # 50 a second: 20 take at least 0.38 s
    stamps = [s.at for s in sim.sent]
    assert len(stamps) == 20
    # a pair rate limit holds that user (refused at once, no call), not the others
    sim.fail(131056)
    with pytest.raises(RetryableDelivery, match="pair rate") as held:
        await connector.send(*message(Content(text="x"), 30))
    assert held.value.retry_after == pytest.approx(0.3)
    calls = sim.calls
    with pytest.raises(RetryableDelivery, match="holding messages to this user"):
        await connector.send(*message(Content(text="x"), 30))
    assert sim.calls == calls
    other = Conversation("c2", "t1", "whatsapp", "sales", "5511888880000")
    assert await connector.send(other, message(Content(text="y"), 31)[1])


async def test_actions_mark_read_and_typing(
    wa: tuple[WhatsAppSimulator, WhatsAppConnector],
) -> None:
    sim, connector = wa
    conversation, _ = message(Content(text="-"))
    await connector.act(conversation, ActionRequest(Action.TYPING_ON, "wamid.LAST"))
    await connector.act(conversation, ActionRequest(Action.MARK_READ, "wamid.LAST"))
    assert [r.get("typing_indicator") for r in sim.reads] == [{"type": "text"}, None]
    assert {r["message_id"] for r in sim.reads} == {"wamid.LAST"}
    with pytest.raises(PermanentDelivery, match="none yet"):
        await connector.act(conversation, ActionRequest(Action.MARK_READ, None))


async def test_a_numbers_throughput_limit_is_waited_out_within_the_send(
    wa: tuple[WhatsAppSimulator, WhatsAppConnector],
) -> None:
    sim, connector = wa
    sim.fail(130429, times=2)
    began = time.monotonic()
    assert await connector.send(*message(Content(text="paced"), 1))
    assert time.monotonic() - began >= 2 * 0.05 * 0.9  # two holds of PACE_SECONDS
    assert [b["text"]["body"] for b in sim.bodies(USER)] == ["paced"]
    sim.fail(130429, times=3)
    with pytest.raises(RetryableDelivery, match="130429") as third:
        await connector.send(*message(Content(text="later"), 2))
    assert third.value.retry_after == pytest.approx(0.05)
    sim.fail(80007)  # the account's rate: straight to the dispatcher
    with pytest.raises(RetryableDelivery, match="80007"):
        await connector.send(*message(Content(text="later"), 2))


async def test_a_190_for_a_token_replaced_during_the_call_does_not_pause_again(
    wa: tuple[WhatsAppSimulator, WhatsAppConnector],
) -> None:
    sim, connector = wa
    sim.numbers["EAAGnewTOKEN"] = SIMULATOR_NUMBER
    sim.expire(SIMULATOR_TOKEN)
    sim.latency = 0.3
    sending = asyncio.create_task(connector.send(*message(Content(text="crossing"), 1)))
    await until(lambda: sim.calls == 1)  # the call is at the provider (0.3 s), old token
    connector.resume("sales", "EAAGnewTOKEN")
    with pytest.raises(RetryableDelivery) as crossed:
        await sending
    assert not isinstance(crossed.value, AccountPaused)
    assert crossed.value.retry_after == 0.0
    assert connector.paused() == {}  # the new token stays in use, unpaused
    sim.latency = 0.0
    assert await connector.send(*message(Content(text="crossing"), 1))
    assert sim.sent[-1].token == "EAAGnewTOKEN"
