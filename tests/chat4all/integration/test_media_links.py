"""The signed-media route, end to end: an uploaded file is fetched back by its signed link with
no API key, byte for byte; a forged, altered or expired link gets 404 and no bytes; the secret
never shows in what the hub answers."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from chat4all.bootstrap import Hub
from chat4all.service_layer.media_links import LINK_PATH
from tests.chat4all.conftest import hub_running

SECRET = "link-secret-for-the-tests"
PUBLIC = "https://media.example.org"


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with hub_running(
        tmp_path, MEDIA_LINK_SECRET=SECRET, MEDIA_PUBLIC_URL=PUBLIC, MEDIA_LINK_TTL=60
    ) as running:
        yield running


async def test_a_signed_link_serves_the_file_without_a_key_until_it_expires(hub: Hub) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    assert hub.admin_key
    async with httpx.AsyncClient(base_url=hub.url) as client:
        answer = await client.post(
            "/v1/media",
            files={"file": ("report ü.pdf", data, "application/pdf")},
            headers={"Authorization": f"Bearer {hub.admin_key}"},
        )
        assert answer.status_code == 201, answer.text
        media_id = answer.json()["id"]
        library = hub.services.media
        url = library.link(hub.settings.DEFAULT_TENANT, media_id)
        assert url.startswith(PUBLIC + LINK_PATH)
        path = url.removeprefix(PUBLIC)

        fetched = await client.get(path)
        assert fetched.status_code == 200, fetched.text
        assert hashlib.sha256(fetched.content).hexdigest() == hashlib.sha256(data).hexdigest()
        assert fetched.headers["content-type"] == "application/pdf"
        assert fetched.headers["content-length"] == str(len(data))
        assert "report%20%C3%BC.pdf" in fetched.headers["content-disposition"]

        token = path.removeprefix(LINK_PATH)
        payload, signature = token.split(".")
        flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
        expired = library.links.token(hub.settings.DEFAULT_TENANT, media_id, now=0.0)
        other_media = library.links.token(hub.settings.DEFAULT_TENANT, "md_none", now=1e12)
        for bad in (f"{payload}.{flipped}", payload, expired, other_media, "x.y"):
            refused = await client.get(LINK_PATH + bad)
            assert refused.status_code == 404, (bad, refused.text)
            assert SECRET not in refused.text
            assert len(refused.content) < 1000
