"""Media one process stored, another serves: two stores on one database and one directory
(``CHAT4ALL_MEDIA_DIR``), over SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from chat4all.adapters.storage.media import FileMediaStore
from chat4all.adapters.storage.sql import SqlStore
from chat4all.config import load_settings


async def of(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_media_written_by_one_process_is_read_by_another(
    store_url: str, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-media"
    first, second = await SqlStore.open(store_url), await SqlStore.open(store_url)
    try:
        writer, reader = FileMediaStore(first, shared), FileMediaStore(second, shared)
        stored = await writer.put(
            "t1",
            of(b"one ", b"file"),
            filename="a.txt",
            mime_type="text/plain",
            kind="document",
            now=1.0,
        )
        # the same bytes from the other side at once: one file, two uploads
        again = await reader.put(
            "t1",
            of(b"one file"),
            filename="b.txt",
            mime_type="text/plain",
            kind="document",
            now=2.0,
        )
        async with reader.open("t1", stored.id) as (found, data):
            assert found == stored
            assert data.read() == b"one file"
        async with writer.open("t1", again.id) as (found, data):
            assert (found.filename, data.read()) == ("b.txt", b"one file")
        assert [p.name for p in shared.rglob("*") if p.is_file()] == [stored.sha256]
    finally:
        await first.close()
        await second.close()


def test_the_media_directory_is_one_setting(tmp_path: Path) -> None:
    default = load_settings(None, DATA_DIR=tmp_path / "data")
    assert default.media_dir == tmp_path / "data" / "media"
    shared = load_settings(None, DATA_DIR=tmp_path / "data", MEDIA_DIR=str(tmp_path / "nfs"))
    assert shared.media_dir == tmp_path / "nfs"
    assert load_settings(None, DATA_DIR=tmp_path, MEDIA_DIR="").media_dir == tmp_path / "media"
