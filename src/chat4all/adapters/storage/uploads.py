"""Resumable uploads staged on the local disk, until they are finished into the media store.

An upload is ``<root>/<id>.json`` (what was declared: tenant, size, name, type, sha256) and
``<root>/<id>.part`` (the bytes received so far; its length is the offset to resume from).
Chunks are appended at the current offset only, streamed to the file; a chunk whose checksum
does not match is cut off again, so the offset only ever covers checked bytes. Nothing lives in
the process: another process sharing the directory resumes where this one stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Final

from chat4all.errors import InvalidRequest, NotFound

__all__ = ["FileUploads", "Staged"]

_ID_CHARS: Final = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Staged:
    """A resumable upload as declared at creation."""

    id: str
    tenant: str
    size: int
    filename: str
    mime_type: str
    kind: str | None
    sha256: str | None
    created_at: float


class FileUploads:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _paths(self, upload_id: str) -> tuple[Path, Path]:
        raw = upload_id.removeprefix("up_")
        if len(raw) != 32 or not set(raw) <= _ID_CHARS:
            raise NotFound(f"no upload {upload_id!r}")
        return self.root / f"{raw}.json", self.root / f"{raw}.part"

    async def create(
        self,
        tenant: str,
        *,
        size: int,
        filename: str,
        mime_type: str,
        kind: str | None,
        sha256: str | None,
        now: float,
    ) -> Staged:
        staged = Staged(
            "up_" + secrets.token_hex(16), tenant, size, filename, mime_type, kind, sha256, now
        )
        meta, part = self._paths(staged.id)

        def write() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            part.touch()
            meta.write_text(json.dumps(asdict(staged)))

        await asyncio.to_thread(write)
        return staged

    async def get(self, tenant: str, upload_id: str) -> tuple[Staged, int]:
        """The upload and its offset (bytes received); :class:`NotFound` for another
        tenant's, like one that does not exist."""
        meta, part = self._paths(upload_id)

        def read() -> tuple[Staged, int]:
            # The offset is read under a shared lock: a chunk still being received (or cut
            # back after a disconnect) holds the exclusive one, and is not counted until done.
            try:
                staged = Staged(**json.loads(meta.read_text()))
                with part.open("rb") as handle:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
                    return staged, os.fstat(handle.fileno()).st_size
            except FileNotFoundError:
                raise NotFound(f"no upload {upload_id!r}") from None

        staged, offset = await asyncio.to_thread(read)
        if staged.tenant != tenant:
            raise NotFound(f"no upload {upload_id!r}")
        return staged, offset

    async def append(
        self,
        tenant: str,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[bytes],
        sha256: str | None = None,
    ) -> int:
        """Append ``chunks`` at ``offset`` (which must be the current one, else
        :class:`InvalidRequest` names it); with ``sha256`` (hex) the chunk is kept only when it
        matches. Returns the new offset."""
        staged, _ = await self.get(tenant, upload_id)
        _, part = self._paths(upload_id)
        handle = await asyncio.to_thread(part.open, "r+b")
        try:
            await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise InvalidRequest(
                f"upload {upload_id} is receiving another chunk; ask its offset and resume",
                field="offset",
            ) from None
        with handle:
            current = await asyncio.to_thread(lambda: os.fstat(handle.fileno()).st_size)
            if offset != current:
                raise InvalidRequest(
                    f"the upload is at offset {current}, not {offset}; send from there",
                    field="offset",
                )
            try:
                return await _receive(handle, chunks, current, staged.size, sha256)
            except BaseException:
                await asyncio.to_thread(_cut, handle, current)
                raise

    @contextlib.asynccontextmanager
    async def opened(self, tenant: str, upload_id: str) -> AsyncIterator[tuple[Staged, BinaryIO]]:
        """A complete upload's bytes from the start (:class:`InvalidRequest` while incomplete)."""
        staged, offset = await self.get(tenant, upload_id)
        if offset != staged.size:
            raise InvalidRequest(
                f"the upload has {offset} of its {staged.size} bytes; send the rest first",
                field="offset",
            )
        _, part = self._paths(upload_id)
        handle = await asyncio.to_thread(part.open, "rb")
        with handle:
            yield staged, handle

    async def discard(self, tenant: str, upload_id: str) -> None:
        await self.get(tenant, upload_id)
        await asyncio.to_thread(lambda: list(_unlink(*self._paths(upload_id))))


async def _receive(
    handle: BinaryIO, chunks: AsyncIterable[bytes], start: int, limit: int, sha256: str | None
) -> int:
    """Write ``chunks`` from ``start``; the new size, or an error (the caller cuts back)."""
    digest = hashlib.sha256()
    size = start
    await asyncio.to_thread(handle.seek, start)
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise InvalidRequest(
                f"the chunk goes past the declared size ({limit} bytes)", field="size"
            )
        digest.update(chunk)
        await asyncio.to_thread(handle.write, chunk)
    if sha256 is not None and digest.hexdigest() != sha256.lower():
        raise InvalidRequest(
            "the chunk's sha256 does not match its bytes; send it again", field="checksum"
        )
    await asyncio.to_thread(_flush, handle)
    return size


def _flush(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _cut(handle: BinaryIO, size: int) -> None:
    handle.flush()
    handle.truncate(size)


def _unlink(*paths: Path) -> Iterator[None]:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        yield None
