"""Use case of uploads: a tenant uploads a file once, then sends it by its ``media_id``.

REST (``POST /v1/media``, multipart) and gRPC (``UploadMedia``) both call :meth:`MediaLibrary
.upload`, so names, types, kinds and the size limit are decided here, once. The resumable upload
(REST ``/v1/uploads``, gRPC ``CreateUpload`` ...) is :meth:`MediaLibrary.create_upload`,
:meth:`~MediaLibrary.upload_offset`, :meth:`~MediaLibrary.append` and
:meth:`~MediaLibrary.finish`, for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import mimetypes
import os
import re
import time
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import BinaryIO, Final

from chat4all.domain.model import UPLOAD_KINDS, Media
from chat4all.errors import InvalidRequest, NotFound
from chat4all.ports import Chunk, MediaStore, Staged, UploadStaging
from chat4all.service_layer.media_links import MediaLinks

__all__ = ["MediaLibrary", "size_text", "DEFAULT_MAX_BYTES"]

MIB: Final = 1024 * 1024
DEFAULT_MAX_BYTES: Final = 50 * MIB
"""The default largest upload (what the bot APIs commonly take; a channel's own smaller limits
are checked when a message is sent)."""
_INLINE: Final = {
    "image/jpeg": "image",
    "image/png": "image",
    "image/webp": "image",
    "video/mp4": "video",
    "audio/mpeg": "audio",
    "audio/mp4": "audio",
    "audio/ogg": "audio",
}
_MIME: Final = re.compile(
    r"(?=.{3,127}$)[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}"
)
"""A media type as the ``media`` table keeps it (at most 127 characters)."""
_SHA256: Final = re.compile(r"[0-9a-f]{64}")


def size_text(size: int) -> str:
    """``10 MB`` for whole mebibytes (as providers state their limits), else bytes."""
    return f"{size // MIB} MB" if size % MIB == 0 else f"{size} bytes"


class MediaLibrary:
    def __init__(
        self,
        store: MediaStore,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
        links: MediaLinks | None = None,
        uploads: UploadStaging | None = None,
    ) -> None:
        self.uploads = uploads
        self.store = store
        self.max_bytes = max_bytes
        self._clock = clock
        self.links = links if links is not None else MediaLinks(None)

    def too_big(self) -> InvalidRequest:
        return InvalidRequest(
            f"the file is larger than {size_text(self.max_bytes)} "
            f"({self.max_bytes} bytes, CHAT4ALL_MEDIA_MAX_BYTES)",
            field="file",
        )

    async def upload(
        self,
        tenant: str,
        chunks: AsyncIterable[bytes],
        filename: str | None,
        mime_type: str | None = None,
        kind: str | None = None,
    ) -> Media:
        """Store an upload; refused when empty or over ``max_bytes`` (nothing is kept then)."""
        name = _filename(filename)
        mime = _mime_type(mime_type, name)
        if kind is not None and kind not in UPLOAD_KINDS:
            raise InvalidRequest(f"kind must be one of {', '.join(UPLOAD_KINDS)}", field="kind")
        return await self.store.put(
            tenant,
            self._checked(chunks),
            filename=name,
            mime_type=mime,
            kind=kind or _kind_of(mime),
            now=self._clock(),
        )

    async def get(self, tenant: str, media_id: str) -> Media:
        return await self.store.get(tenant, media_id)

    def open(
        self, tenant: str, media_id: str
    ) -> contextlib.AbstractAsyncContextManager[tuple[Media, BinaryIO]]:
        """One of ``tenant``'s files and its bytes (``NotFound`` for another tenant's)."""
        return self.store.open(tenant, media_id)

    def _staging(self) -> UploadStaging:
        if self.uploads is None:
            raise InvalidRequest("resumable uploads are not enabled on this hub")
        return self.uploads

    async def create_upload(
        self,
        tenant: str,
        size: int,
        filename: str | None,
        mime_type: str | None = None,
        kind: str | None = None,
        sha256: str | None = None,
    ) -> Staged:
        """Declare a resumable upload of ``size`` bytes; its chunks follow by :meth:`append`."""
        if size <= 0:
            raise InvalidRequest("the file is empty", field="size")
        if size > self.max_bytes:
            raise self.too_big()
        if kind is not None and kind not in UPLOAD_KINDS:
            raise InvalidRequest(f"kind must be one of {', '.join(UPLOAD_KINDS)}", field="kind")
        if sha256 is not None and not _SHA256.fullmatch(sha256.lower()):
            raise InvalidRequest("sha256 must be 64 hexadecimal digits", field="sha256")
        name = _filename(filename)
        return await self._staging().create(
            tenant,
            size=size,
            filename=name,
            mime_type=_mime_type(mime_type, name),
            kind=kind,
            sha256=sha256.lower() if sha256 else None,
            now=self._clock(),
        )

    async def upload_offset(self, tenant: str, upload_id: str) -> tuple[Staged, int]:
        """Where an upload stands: what was declared and the bytes received so far."""
        return await self._staging().get(tenant, upload_id, self._clock())

    async def append(
        self, tenant: str, upload_id: str, offset: int, chunks: Chunk | AsyncIterable[Chunk]
    ) -> int:
        """Add a chunk (REST: a request's body), or chunks in turn (gRPC: a stream's
        messages), at ``offset`` (the current one); each is kept whole or not at all, and the
        whole ones before a refused chunk or a disconnect stay. Returns the new offset."""
        staging = self._staging()
        return await staging.append(tenant, upload_id, offset, _checked_chunks(chunks), self._clock)

    async def expire_uploads(self) -> int:
        """Delete the unfinished uploads without a write for their time to live (the hub's
        housekeeping); how many."""
        return 0 if self.uploads is None else await self.uploads.expire(self._clock())

    async def finish(self, tenant: str, upload_id: str) -> Media:
        """A complete upload becomes a :class:`Media` (as :meth:`upload`), once its size and
        declared sha256 are checked; the staged bytes are then dropped."""
        staging = self._staging()
        async with staging.opened(tenant, upload_id, self._clock()) as (staged, handle):
            media = await self.upload(
                tenant,
                _read(handle, expected=staged.sha256),
                staged.filename,
                staged.mime_type,
                staged.kind,
            )
        await staging.discard(tenant, upload_id, self._clock())
        return media

    def link(self, tenant: str, media_id: str) -> str:
        """A signed, expiring public URL of an upload (:class:`InvalidRequest` with the reason
        when links are not configured)."""
        return self.links.url(tenant, media_id, self._clock())

    @contextlib.asynccontextmanager
    async def open_signed(self, token: str) -> AsyncIterator[tuple[Media, BinaryIO]]:
        """The upload a link names and its bytes; :class:`NotFound` for any bad, expired or
        forged link, or media gone (all answered alike)."""
        signed = self.links.verify(token, self._clock())
        if signed is None:
            raise NotFound("no such media link, or it has expired")
        async with self.store.open(signed.tenant, signed.media_id) as opened:
            yield opened

    async def _checked(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > self.max_bytes:
                raise self.too_big()
            yield chunk
        if size == 0:
            raise InvalidRequest("the file is empty", field="file")


async def _checked_chunks(chunks: Chunk | AsyncIterable[Chunk]) -> AsyncIterator[Chunk]:
    """``chunks``, each refused when its sha256 is not 64 hexadecimal digits."""
    if isinstance(chunks, Chunk):
        chunks = _single(chunks)
    async for chunk in chunks:
        if chunk.sha256 is not None and not _SHA256.fullmatch(chunk.sha256.lower()):
            raise InvalidRequest("a chunk's sha256 must be 64 hexadecimal digits", field="checksum")
        yield chunk


async def _single(chunk: Chunk) -> AsyncIterator[Chunk]:
    yield chunk


async def _read(handle: BinaryIO, expected: str | None) -> AsyncIterator[bytes]:
    """``handle``'s bytes; with ``expected``, an error at the end (before the store keeps
    anything) when they do not hash to it."""
    digest = hashlib.sha256()
    while chunk := await asyncio.to_thread(handle.read, MIB):
        digest.update(chunk)
        yield chunk
    if expected is not None and digest.hexdigest() != expected:
        raise InvalidRequest(
            f"the bytes received have sha256 {digest.hexdigest()}, not the declared "
            f"{expected}; create the upload again",
            field="sha256",
        )


def _filename(raw: str | None) -> str:
    """The last path component, printable, at most 255 characters; ``file`` when none."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    if name in ("", ".", ".."):
        return "file"
    if len(name) > 255:
        stem, suffix = os.path.splitext(name)
        name = stem[: 255 - len(suffix)] + suffix if len(suffix) <= 16 else name[:255]
    return name


def _mime_type(raw: str | None, filename: str) -> str:
    given = (raw or "").split(";", 1)[0].strip().lower()
    if given and given != "application/octet-stream":
        if not _MIME.fullmatch(given):
            raise InvalidRequest(f"{raw!r} is not a media type (type/subtype)", field="mime_type")
        return given
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


def _kind_of(mime_type: str) -> str:
    """The kind a type is sent as by default: only what providers show inline as a photo,
    video or audio player; anything else (SVG, BMP, MKV ...) goes as a document."""
    return _INLINE.get(mime_type, "document")
