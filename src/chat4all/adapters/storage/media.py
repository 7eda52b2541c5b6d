"""Uploaded media on the local disk, with a metadata row per upload in the ``media`` table.

Files live under ``root`` (``CHAT4ALL_MEDIA_DIR``, default ``CHAT4ALL_DATA_DIR/media``),
addressed by their content:
``<tenant>/<sha256[:2]>/<sha256>``, so a tenant uploading the same bytes twice stores them
once, and two tenants never share a file. Each upload still gets its own id (and keeps its own
file name and type). A file appears under its final name only once complete (written to a
temporary file in the same directory, fsynced, then renamed), so a crash mid-upload leaves no
half file behind a media id.

Nothing of it lives in the process: the files are found by their path, the rows in the shared
database, uploads are staged under unique temporary names and published by an atomic rename
(two processes publishing the same bytes at once both write the same file). Several processes
on one database share the directory, and one serves what another stored.
:class:`~chat4all.adapters.storage.media_s3.S3MediaStore` replaces this one behind the port
with an S3-compatible bucket; both keep their rows with :class:`MediaRows` and lay their bytes
out by :func:`content_path`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO, Final

import sqlalchemy as sa

from chat4all.adapters.storage.schema import media as media_table
from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import Media
from chat4all.errors import NotFound

log = logging.getLogger(__name__)

__all__ = ["FileMediaStore", "MediaRows", "content_path", "media_table"]

_SAFE_TENANT: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def content_path(tenant: str, sha256: str) -> str:
    """Where a tenant's bytes of ``sha256`` live in a media store, ``/``-separated:
    ``<tenant>/<sha256[:2]>/<sha256>``. A tenant name is used as is when it is plainly safe;
    otherwise (dots, slashes, other characters) by its hash, behind a ``~`` no plain name
    contains."""
    folder = (
        tenant
        if _SAFE_TENANT.fullmatch(tenant)
        else "~" + hashlib.sha256(tenant.encode()).hexdigest()[:32]
    )
    return f"{folder}/{sha256[:2]}/{sha256}"


class MediaRows:
    """The ``media`` table: one row per upload (its own id, name and type), whatever store
    keeps the bytes."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def add(
        self,
        tenant: str,
        sha256: str,
        size: int,
        *,
        filename: str,
        mime_type: str,
        kind: str,
        now: float,
    ) -> Media:
        """A new upload of bytes already stored (its row, with a fresh media id)."""
        media = Media(
            "md_" + secrets.token_hex(12), tenant, filename, mime_type, size, sha256, kind, now
        )
        async with self._store.transaction() as conn:
            await conn.execute(
                media_table.insert().values(
                    id=media.id,
                    tenant=tenant,
                    sha256=sha256,
                    size=size,
                    filename=filename,
                    mime_type=mime_type,
                    kind=kind,
                    created_at=now,
                )
            )
        return media

    async def get(self, tenant: str, media_id: str) -> Media:
        """Raises ``NotFound`` when ``tenant`` has no such media."""
        async with self._store.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(media_table).where(
                        media_table.c.id == media_id, media_table.c.tenant == tenant
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"no media {media_id!r}")
        return _to_media(row)


class FileMediaStore:
    """:class:`~chat4all.ports.MediaStore` on a directory and the hub's database."""

    def __init__(self, store: SqlStore, root: Path) -> None:
        self._rows = MediaRows(store)
        self.root = root

    def _path(self, tenant: str, sha256: str) -> Path:
        return self.root / content_path(tenant, sha256)

    async def put(
        self,
        tenant: str,
        chunks: AsyncIterable[bytes],
        *,
        filename: str,
        mime_type: str,
        kind: str,
        now: float,
    ) -> Media:
        staging = self.root / ".incoming"
        await asyncio.to_thread(staging.mkdir, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=staging)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    await asyncio.to_thread(out.write, chunk)
                await asyncio.to_thread(_flush, out)
            sha256 = digest.hexdigest()
            final = self._path(tenant, sha256)
            await asyncio.to_thread(_publish, Path(name), final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        return await self._rows.add(
            tenant, sha256, size, filename=filename, mime_type=mime_type, kind=kind, now=now
        )

    async def get(self, tenant: str, media_id: str) -> Media:
        return await self._rows.get(tenant, media_id)

    @contextlib.asynccontextmanager
    async def open(self, tenant: str, media_id: str) -> AsyncIterator[tuple[Media, BinaryIO]]:
        media = await self.get(tenant, media_id)
        try:
            handle = await asyncio.to_thread(self._path(tenant, media.sha256).open, "rb")
        except FileNotFoundError:  # the path is the operator's to know, not the tenant's
            log.error("media %s has no file under %s any more", media_id, self.root)
            raise NotFound(f"media {media_id!r} has no file any more; upload it again") from None
        try:
            yield media, handle
        finally:
            handle.close()


def _flush(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


def _publish(staged: Path, final: Path) -> None:
    """Move a complete upload to its content address (the same bytes may be there already)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        return
    os.replace(staged, final)
    with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _to_media(row: Any) -> Media:
    return Media(
        id=row.id,
        tenant=row.tenant,
        filename=row.filename,
        mime_type=row.mime_type,
        size=int(row.size),
        sha256=row.sha256,
        kind=row.kind,
        created_at=float(row.created_at),
    )
