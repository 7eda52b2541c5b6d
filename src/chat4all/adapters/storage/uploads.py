"""Resumable uploads staged on the local disk, until they are finished into the media store
(:class:`~chat4all.ports.UploadStaging` with ``CHAT4ALL_MEDIA_BACKEND=file``;
:class:`~chat4all.adapters.storage.uploads_s3.S3Uploads` stages them in the bucket). The error
messages both give are made here, once.

An upload is ``<root>/<id>.json`` (what was declared: tenant, size, name, type, sha256),
``<root>/<id>.part`` (the bytes received) and ``<root>/<id>.offset`` (how many of them are kept:
the offset to resume from; replaced whole at each kept chunk, and its modification time is the
last write). Chunks are appended at the current offset only, streamed to the file, by one request
at a time (an exclusive lock on the ``.part``; another request meanwhile is an
:class:`~chat4all.errors.UploadConflict`). A chunk is kept only whole and, with a sha256, only
when it matches; bytes past the offset (a chunk being received, cut short or refused, or left by
a crash) are cut off again. Asking the offset takes no lock, so it answers at once, even while a
chunk arrives. Nothing lives in the process: another process sharing the directory resumes
where this one stopped. An upload without a kept chunk for ``ttl`` seconds is expired: refused
as gone, and deleted by :meth:`FileUploads.expire`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import BinaryIO, Final

from chat4all.errors import InvalidRequest, NotFound, UploadConflict
from chat4all.ports import Chunk, Staged

__all__ = [
    "FileUploads",
    "DEFAULT_TTL",
    "new_upload_id",
    "upload_stem",
    "gone",
    "expired",
    "busy",
    "stale_offset",
    "incomplete",
    "check_size",
    "check_sha256",
]

_ID_CHARS: Final = frozenset("0123456789abcdef")
DEFAULT_TTL: Final = 24 * 3600.0
"""Seconds an unfinished upload is kept after its last write."""


def new_upload_id() -> str:
    return "up_" + secrets.token_hex(16)


def upload_stem(upload_id: str) -> str:
    """The 32 hexadecimal digits of an upload's id (:class:`NotFound` for anything else, so
    a made-up id never reaches a path or a key)."""
    raw = upload_id.removeprefix("up_")
    if len(raw) != 32 or not set(raw) <= _ID_CHARS:
        raise NotFound(f"no upload {upload_id!r}")
    return raw


def gone(upload_id: str, ttl: float) -> NotFound:
    return NotFound(
        f"no upload {upload_id!r}: it never existed, was completed, or expired "
        f"(an unfinished upload is dropped {_hours(ttl)} after its last chunk); "
        "create a new upload and send the file again"
    )


def expired(upload_id: str, ttl: float) -> NotFound:
    return NotFound(
        f"upload {upload_id} expired: nothing was written to it for "
        f"{_hours(ttl)}; create a new upload and send the file again"
    )


def busy(upload_id: str, lease: float | None = None) -> UploadConflict:
    """Another request is writing; with ``lease``, the seconds until a dead writer's hold
    lapses."""
    lapses = (
        f" (or the process receiving it stopped: it is free again within {lease:g} s)"
        if lease is not None
        else ""
    )
    return UploadConflict(
        f"upload {upload_id} is receiving another chunk now{lapses}; ask its offset once that "
        "request ends and send from there"
    )


def stale_offset(upload_id: str, current: int, offset: int) -> UploadConflict:
    return UploadConflict(
        f"upload {upload_id} is at offset {current}, not {offset}; send from {current}"
    )


def incomplete(staged: Staged, offset: int) -> InvalidRequest:
    return InvalidRequest(
        f"the upload has {offset} of its {staged.size} bytes; send the rest first",
        field="offset",
    )


class FileUploads:
    def __init__(self, root: Path, ttl: float = DEFAULT_TTL) -> None:
        self.root = root
        self.ttl = ttl

    def _paths(self, upload_id: str) -> tuple[Path, Path, Path]:
        return _files(self.root, upload_stem(upload_id))

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
        staged = Staged(new_upload_id(), tenant, size, filename, mime_type, kind, sha256, now)
        meta, part, kept = self._paths(staged.id)

        def write() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            part.touch()
            _keep(kept, 0, now)
            meta.write_text(json.dumps(asdict(staged)))

        await asyncio.to_thread(write)
        return staged

    async def get(self, tenant: str, upload_id: str, now: float) -> tuple[Staged, int]:
        """The upload and its offset (bytes kept); :class:`NotFound` for another tenant's,
        like one that does not exist, and for one without a kept chunk for ``ttl``."""
        meta, part, kept = self._paths(upload_id)

        def read() -> tuple[Staged, int, float]:
            try:
                staged = Staged(**json.loads(meta.read_text()))
                try:
                    return (staged, *_kept(kept))
                except FileNotFoundError:  # staged before the offset had its own file
                    stat = part.stat()
                    return staged, stat.st_size, stat.st_mtime
            except FileNotFoundError:
                raise gone(upload_id, self.ttl) from None

        staged, offset, written = await asyncio.to_thread(read)
        if staged.tenant != tenant:
            raise NotFound(f"no upload {upload_id!r}")
        if now - written > self.ttl:
            raise expired(upload_id, self.ttl)
        return staged, offset

    async def append(
        self,
        tenant: str,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[Chunk],
        clock: Callable[[], float],
    ) -> int:
        """Append ``chunks`` at ``offset``, which must be the current one (else
        :class:`UploadConflict` names it, as when another request is writing this upload).
        Each chunk is kept whole or not at all: when one is refused (a wrong sha256, past the
        declared size) or ``chunks`` fails (the client went away), the chunks before it stay.
        Returns the new offset; ``clock`` says when each chunk was kept."""
        staged, _ = await self.get(tenant, upload_id, clock())
        _, part, kept = self._paths(upload_id)
        handle = await asyncio.to_thread(part.open, "r+b")
        try:
            await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise busy(upload_id) from None
        with handle:
            writing = await asyncio.to_thread(_Part, handle, kept, clock)
            if offset != writing.committed:
                raise stale_offset(upload_id, writing.committed, offset)
            try:
                async for chunk in chunks:
                    await _receive(writing, chunk, staged.size)
            finally:
                offset = await asyncio.to_thread(writing.settle)
                # the next request may go on at once (a client resuming after a disconnect)
                # while the kept bytes reach the disk
                await asyncio.to_thread(_release_and_sync, handle)
            return offset

    @contextlib.asynccontextmanager
    async def opened(
        self, tenant: str, upload_id: str, now: float
    ) -> AsyncIterator[tuple[Staged, BinaryIO]]:
        """A complete upload's bytes from the start (:class:`InvalidRequest` while incomplete)."""
        staged, offset = await self.get(tenant, upload_id, now)
        if offset != staged.size:
            raise incomplete(staged, offset)
        _, part, _ = self._paths(upload_id)
        handle = await asyncio.to_thread(part.open, "rb")
        with handle:
            yield staged, handle

    async def discard(self, tenant: str, upload_id: str, now: float) -> None:
        await self.get(tenant, upload_id, now)
        await asyncio.to_thread(lambda: list(_unlink(*self._paths(upload_id))))

    async def expire(self, now: float) -> int:
        """Delete the uploads (of every tenant) without a kept chunk for ``ttl`` seconds, but
        for one a request is writing now; returns how many."""
        return await asyncio.to_thread(self._expire, now)

    def _expire(self, now: float) -> int:
        if not self.root.is_dir():
            return 0
        stems = {p.name.split(".", 1)[0] for p in self.root.iterdir()}
        expired = 0
        for stem in sorted(s for s in stems if len(s) == 32 and set(s) <= _ID_CHARS):
            meta, part, kept = _files(self.root, stem)
            try:
                written = _kept(kept)[1]
            except FileNotFoundError:  # a create cut short, or one gone meanwhile
                written = max((p.stat().st_mtime for p in (meta, part) if p.exists()), default=0)
            if now - written <= self.ttl:
                continue
            with contextlib.ExitStack() as held:
                with contextlib.suppress(FileNotFoundError):
                    handle = held.enter_context(part.open("rb"))
                    try:
                        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:  # a chunk is arriving: not idle after all
                        continue
                list(_unlink(meta, kept, *self.root.glob(f"{stem}.offset.*"), part))
                expired += 1
        return expired


def _files(root: Path, stem: str) -> tuple[Path, Path, Path]:
    return root / f"{stem}.json", root / f"{stem}.part", root / f"{stem}.offset"


def _kept(kept: Path) -> tuple[int, float]:
    """The offset and the time it was last moved (:class:`FileNotFoundError` when gone)."""
    with kept.open("rb") as handle:
        return int(handle.read() or b"0"), os.fstat(handle.fileno()).st_mtime


def _keep(kept: Path, offset: int, now: float) -> None:
    """Record ``offset`` as kept, whole (a reader sees the old file or the new one)."""
    fresh = kept.with_name(f"{kept.name}.{secrets.token_hex(4)}")
    fresh.write_bytes(str(offset).encode())
    os.utime(fresh, (now, now))
    os.replace(fresh, kept)


class _Part:
    """The ``.part`` of an upload, opened and locked by one append. Bytes count once committed
    (a chunk whole and checked: the ``.offset`` moves); :meth:`settle` cuts off the rest. The
    writing threads and the settling one take turns, and nothing is written after the settle,
    so a write still running when its call is cancelled cannot land past the cut."""

    def __init__(self, handle: BinaryIO, kept: Path, clock: Callable[[], float]) -> None:
        self._handle = handle
        self._kept = kept
        self._clock = clock
        self._turn = threading.Lock()
        self._settled = False
        try:
            self.committed = _kept(kept)[0]
        except FileNotFoundError:  # staged before the offset had its own file
            self.committed = os.fstat(handle.fileno()).st_size
        handle.truncate(self.committed)  # what a crash left past the offset
        handle.seek(self.committed)

    def write(self, data: bytes, *, commit: bool = False) -> None:
        with self._turn:
            if self._settled:
                return
            self._handle.write(data)
            if commit:
                self._commit()

    def commit(self) -> None:
        with self._turn:
            if not self._settled:
                self._commit()

    def _commit(self) -> None:
        self._handle.flush()
        self.committed = self._handle.tell()
        _keep(self._kept, self.committed, self._clock())

    def settle(self) -> int:
        """Keep only the committed bytes (nothing is written after); the offset."""
        with self._turn:
            self._settled = True
            self._handle.flush()
            self._handle.truncate(self.committed)
            return self.committed


def _release_and_sync(handle: BinaryIO) -> None:
    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    os.fsync(handle.fileno())


async def _receive(part: _Part, chunk: Chunk, limit: int) -> None:
    """Write ``chunk`` after the committed bytes and commit it, or raise (the caller settles:
    what the chunk wrote is cut off)."""
    start = part.committed
    if isinstance(chunk.data, bytes):
        check_size(start + len(chunk.data), limit, start)
        digest = await asyncio.to_thread(hashlib.sha256, chunk.data)
        check_sha256(digest.hexdigest(), chunk.sha256, start)
        await asyncio.to_thread(part.write, chunk.data, commit=True)
        return
    digest = hashlib.sha256()
    size = start
    async for piece in chunk.data:
        size += len(piece)
        check_size(size, limit, start)
        digest.update(piece)
        await asyncio.to_thread(part.write, piece)
    check_sha256(digest.hexdigest(), chunk.sha256, start)
    await asyncio.to_thread(part.commit)


def check_size(size: int, limit: int, start: int) -> None:
    if size > limit:
        raise InvalidRequest(
            f"the chunk at offset {start} goes past the declared size ({limit} bytes); the "
            f"upload is at offset {start}: send only the rest of the file from there",
            field="size",
        )


def check_sha256(actual: str, expected: str | None, start: int) -> None:
    if expected is not None and actual != expected.lower():
        raise InvalidRequest(
            f"the sha256 of the chunk at offset {start} does not match its bytes; the upload "
            f"is at offset {start}: send the chunk again from there",
            field="checksum",
        )


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:g} h" if hours >= 1 else f"{seconds:g} s"


def _unlink(*paths: Path) -> Iterator[None]:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        yield None
