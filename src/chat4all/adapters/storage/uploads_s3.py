"""Resumable uploads staged in the S3 bucket of the media (``CHAT4ALL_MEDIA_BACKEND=s3``), so
that any API process takes the next chunk of an upload another one started, and none needs a
disk of its own or a shared one.

The same contract as :class:`~chat4all.adapters.storage.uploads.FileUploads` (the
:class:`~chat4all.ports.UploadStaging` port), kept in two places every process sees:

- the bucket holds the bytes: each kept chunk is one or more objects
  ``<S3_PREFIX>.uploads/<id>/<start:020d>.<random>`` (a chunk larger than ``segment_size``,
  the S3 part size, is cut as it streams in, and the small chunks of one call are gathered
  into one, so a request holds about two segments in memory at most);
- the database holds the rest (``staged_uploads``: what was declared, the offset kept, when the
  last chunk was kept; ``staged_segments``: which object holds which bytes). A chunk is kept
  when its objects are written and its row moves the offset, in one transaction with its
  segments' rows; a chunk refused or cut short never gets rows, and its objects are deleted.

One request at a time: an append takes a lease on the upload's row (a random token until
``lease`` seconds ahead, renewed while the request lasts); another request meanwhile is an
:class:`~chat4all.errors.UploadConflict`. A process that dies mid-chunk leaves its lease to lapse
(then the next request takes it) and its objects to the sweep. The offset moves only under the
lease and from the offset it started at, so a writer that stalled past its lease cannot keep a
chunk over the one that took over; each object has a name of its own, so its late bytes land
beside the kept ones, never over them. Lease times are the processes' wall clocks (hosts keep
them within a second of each other with NTP; the lease is ``lease`` seconds).

Finishing reads the segments in order as one stream (:meth:`S3Uploads.opened`), into the media
store, which hashes it and stores it whole under its content address. :meth:`S3Uploads.expire`
deletes the uploads idle past the time to live and every staged object without an upload (a
chunk cut short by a crash, an upload finished or discarded whose objects could not be deleted).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import sqlalchemy as sa
from botocore.exceptions import BotoCoreError, ClientError

from chat4all.adapters.storage.schema import staged_segments, staged_uploads
from chat4all.adapters.storage.uploads import (
    DEFAULT_TTL,
    busy,
    check_sha256,
    check_size,
    expired,
    gone,
    incomplete,
    new_upload_id,
    stale_offset,
    upload_stem,
)
from chat4all.errors import NotFound, StoreUnavailable, UploadConflict
from chat4all.ports import Chunk, Staged

if TYPE_CHECKING:
    from chat4all.adapters.storage.media_s3 import S3MediaStore
    from chat4all.adapters.storage.sql import SqlStore

__all__ = ["S3Uploads", "STAGING", "DEFAULT_LEASE"]

log = logging.getLogger(__name__)

MIB: Final = 1024 * 1024
STAGING: Final = ".uploads/"
"""Where the chunks are, under the prefix (no tenant's folder starts with a dot)."""
DEFAULT_LEASE: Final = 30.0
"""Seconds a request writing an upload holds it without renewing (renewed every third)."""
DEFAULT_GATHER: Final = 1.0
"""Seconds the small chunks of one call wait, gathered, for the next one before they are kept."""


class S3Uploads:
    """:class:`~chat4all.ports.UploadStaging` in the media's bucket and the hub's database."""

    def __init__(
        self,
        store: SqlStore,
        media: S3MediaStore,
        ttl: float = DEFAULT_TTL,
        *,
        lease: float = DEFAULT_LEASE,
        lease_clock: Callable[[], float] = time.time,
        segment_size: int | None = None,
        gather: float = DEFAULT_GATHER,
    ) -> None:
        self._store = store
        self._media = media
        self.ttl = ttl
        self.lease = lease
        self._lease_clock = lease_clock
        self.segment_size = segment_size or media.part_size
        self.gather = gather
        self.staging = media.prefix + STAGING

    def _folder(self, upload_id: str) -> str:
        return f"{self.staging}{upload_stem(upload_id)}/"

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
        async with self._store.transaction() as conn:
            await conn.execute(
                staged_uploads.insert().values(**asdict(staged), kept=0, written_at=now)
            )
        return staged

    async def get(self, tenant: str, upload_id: str, now: float) -> tuple[Staged, int]:
        upload_stem(upload_id)
        async with self._store.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(staged_uploads).where(staged_uploads.c.id == upload_id)
                )
            ).first()
        if row is None:
            raise gone(upload_id, self.ttl)
        staged = Staged(
            row.id,
            row.tenant,
            int(row.size),
            row.filename,
            row.mime_type,
            row.kind,
            row.sha256,
            float(row.created_at),
        )
        if staged.tenant != tenant:
            raise NotFound(f"no upload {upload_id!r}")
        if now - float(row.written_at) > self.ttl:
            raise expired(upload_id, self.ttl)
        return staged, int(row.kept)

    async def append(
        self,
        tenant: str,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[Chunk],
        clock: Callable[[], float],
    ) -> int:
        staged, _ = await self.get(tenant, upload_id, clock())
        token = secrets.token_hex(16)
        kept = await self._take(upload_id, token)
        try:
            if offset != kept:
                raise stale_offset(upload_id, kept, offset)
            async with self._renewed(upload_id, token):
                writing = _Writing(self, staged, token, kept, clock)
                try:
                    await self._receive(writing, chunks)
                except BaseException:
                    await asyncio.shield(writing.settle())
                    raise
                await writing.flush()
                return writing.kept
        finally:
            # shielded: a cancelled request still lets the next one in at once
            await asyncio.shield(self._release(upload_id, token))

    async def _receive(self, writing: _Writing, chunks: AsyncIterable[Chunk]) -> None:
        """Each of ``chunks`` to ``writing``; the chunks it gathers are kept once the next
        one is ``gather`` seconds late (a client that pauses, or hangs before it goes)."""
        iterator = aiter(chunks)

        async def following() -> Chunk:
            return await anext(iterator)

        while True:
            coming = asyncio.ensure_future(following())
            try:
                if writing.gathered:
                    done, _ = await asyncio.wait({coming}, timeout=self.gather)
                    if not done:
                        await writing.flush()
                chunk = await coming
            except StopAsyncIteration:
                return
            finally:
                coming.cancel()  # when this call is cancelled, or failed, waiting
            await writing.receive(chunk)

    @contextlib.asynccontextmanager
    async def opened(
        self, tenant: str, upload_id: str, now: float
    ) -> AsyncIterator[tuple[Staged, BinaryIO]]:
        staged, offset = await self.get(tenant, upload_id, now)
        if offset != staged.size:
            raise incomplete(staged, offset)
        async with self._store.engine.connect() as conn:
            segments = (
                await conn.execute(
                    sa.select(
                        staged_segments.c.start, staged_segments.c.size, staged_segments.c.name
                    )
                    .where(staged_segments.c.upload_id == upload_id)
                    .order_by(staged_segments.c.start)
                )
            ).all()
        end = 0
        for start, size, _ in segments:
            if int(start) != end:
                break
            end += int(size)
        if end != staged.size:  # never, unless rows were lost: the bytes cannot be told
            log.error("upload %s has segments up to byte %d of its %d", upload_id, end, offset)
            raise NotFound(
                f"upload {upload_id!r} lost some of its staged bytes; create a new upload and "
                "send the file again"
            )
        folder = self._folder(upload_id)
        parts = [(folder + name, int(size)) for _, size, name in segments]
        handle = io.BufferedReader(_Objects(self._media, parts), buffer_size=MIB)
        try:
            yield staged, handle
        finally:
            handle.close()

    async def discard(self, tenant: str, upload_id: str, now: float) -> None:
        await self.get(tenant, upload_id, now)
        async with self._store.transaction() as conn:
            await conn.execute(
                staged_segments.delete().where(staged_segments.c.upload_id == upload_id)
            )
            await conn.execute(staged_uploads.delete().where(staged_uploads.c.id == upload_id))
        try:
            await self._delete(await self._keys(self._folder(upload_id)))
        except StoreUnavailable:  # the upload is gone; its objects are the sweep's now
            log.warning("the staged objects of upload %s are left to the next sweep", upload_id)

    async def expire(self, now: float) -> int:
        held_now = self._lease_clock()
        async with self._store.transaction() as conn:
            idle = sa.select(staged_uploads.c.id).where(
                staged_uploads.c.written_at < now - self.ttl,
                sa.or_(staged_uploads.c.holder.is_(None), staged_uploads.c.held_until < held_now),
            )
            ids = (
                (
                    await conn.execute(
                        staged_uploads.delete()
                        .where(staged_uploads.c.id.in_(idle.scalar_subquery()))
                        .returning(staged_uploads.c.id)
                    )
                )
                .scalars()
                .all()
            )
            if ids:
                await conn.execute(
                    staged_segments.delete().where(staged_segments.c.upload_id.in_(ids))
                )
        # every staged object of an upload that has no row (expired now, finished or
        # discarded earlier, or a chunk written after its upload went)
        keys = await self._keys(self.staging)
        by_id: dict[str, list[str]] = {}
        for key in keys:
            stem = key[len(self.staging) :].split("/", 1)[0]
            by_id.setdefault("up_" + stem, []).append(key)
        alive: set[str] = set()
        for batch in _batches(sorted(by_id), 500):
            async with self._store.engine.connect() as conn:
                alive.update(
                    (
                        await conn.execute(
                            sa.select(staged_uploads.c.id).where(staged_uploads.c.id.in_(batch))
                        )
                    )
                    .scalars()
                    .all()
                )
        await self._delete([key for id_, ks in by_id.items() if id_ not in alive for key in ks])
        return len(ids)

    # ---- the lease -------------------------------------------------------------------------

    async def _take(self, upload_id: str, token: str) -> int:
        """Hold the upload for ``token`` (:func:`busy` while another request holds it); the
        offset kept."""
        now = self._lease_clock()
        async with self._store.transaction() as conn:
            kept = (
                await conn.execute(
                    staged_uploads.update()
                    .where(
                        staged_uploads.c.id == upload_id,
                        sa.or_(
                            staged_uploads.c.holder.is_(None),
                            staged_uploads.c.held_until < now,
                        ),
                    )
                    .values(holder=token, held_until=now + self.lease)
                    .returning(staged_uploads.c.kept)
                )
            ).scalar()
            if kept is not None:
                return int(kept)
            there = (
                await conn.execute(
                    sa.select(staged_uploads.c.id).where(staged_uploads.c.id == upload_id)
                )
            ).scalar()
        raise busy(upload_id, self.lease) if there is not None else gone(upload_id, self.ttl)

    @contextlib.asynccontextmanager
    async def _renewed(self, upload_id: str, token: str) -> AsyncIterator[None]:
        """The lease renewed every third of it while the block runs."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lease / 3)
                now = self._lease_clock()
                try:
                    async with self._store.transaction() as conn:
                        renewed = await conn.execute(
                            staged_uploads.update()
                            .where(
                                staged_uploads.c.id == upload_id,
                                staged_uploads.c.holder == token,
                            )
                            .values(held_until=now + self.lease)
                        )
                except Exception as exc:  # the database now: a next try, within the lease
                    log.warning(
                        "could not renew the lease on upload %s: %s: %s",
                        upload_id,
                        type(exc).__name__,
                        exc,
                    )
                    continue
                if renewed.rowcount == 0:  # taken over: the chunk will not be kept
                    return

        renewing = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _release(self, upload_id: str, token: str) -> None:
        try:
            async with self._store.transaction() as conn:
                await conn.execute(
                    staged_uploads.update()
                    .where(staged_uploads.c.id == upload_id, staged_uploads.c.holder == token)
                    .values(holder=None, held_until=None)
                )
        except Exception as exc:  # the lease lapses by itself; the request's outcome stands
            log.warning(
                "could not release upload %s (free again in %g s): %s: %s",
                upload_id,
                self.lease,
                type(exc).__name__,
                exc,
            )

    # ---- the bucket ------------------------------------------------------------------------

    async def _put(
        self, upload_id: str, start: int, body: bytes | bytearray
    ) -> tuple[int, int, str]:
        """``body`` (a bytearray emptied once sent) as a new object holding the bytes from
        ``start``: its segment."""
        name, size = f"{start:020d}.{secrets.token_hex(8)}", len(body)
        media = self._media
        await media.call(
            "store a chunk of an upload",
            media.client.put_object,
            Bucket=media.bucket,
            Key=self._folder(upload_id) + name,
            Body=body,  # a bytearray is sent as is (bytes get copied)
        )
        if isinstance(body, bytearray):  # the HTTP client keeps its last request until its next
            body.clear()
        return start, size, name

    async def _keys(self, prefix: str) -> list[str]:
        media = self._media

        def listed() -> list[str]:
            pages = media.client.get_paginator("list_objects_v2").paginate(
                Bucket=media.bucket, Prefix=prefix
            )
            return [o["Key"] for page in pages for o in page.get("Contents", [])]

        return await media.call("list the staged uploads", listed)

    async def _delete(self, keys: list[str]) -> None:
        media = self._media
        for batch in _batches(keys, 1000):  # S3's most per request
            answer = await media.call(
                "delete staged chunks",
                media.client.delete_objects,
                Bucket=media.bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            for error in answer.get("Errors", []):
                log.warning(
                    "could not delete the staged object %s from the %s: %s",
                    error.get("Key"),
                    media.where,
                    error.get("Code"),
                )


class _Writing:
    """One append's chunks, written as objects and kept by moving the offset. Small chunks of
    one call (gRPC's messages) are gathered whole, up to a segment, and kept together: once
    they fill one, before a larger chunk's first segment is written, and when the call ends (or
    fails: the whole chunks before a refused or cut one stay). A segment never mixes the bytes
    of a chunk not yet whole with others, so a refused chunk is dropped alone; at most a
    segment gathered and one of the chunk arriving are in memory. (And once the next chunk is
    late: :meth:`S3Uploads._receive`.)"""

    def __init__(
        self,
        uploads: S3Uploads,
        staged: Staged,
        token: str,
        kept: int,
        clock: Callable[[], float],
    ) -> None:
        self._uploads = uploads
        self._staged = staged
        self._token = token
        self._clock = clock
        self.kept = kept
        self._whole = bytearray()
        """Whole chunks after ``kept``, not written yet (less than a segment)."""

    async def receive(self, chunk: Chunk) -> None:
        """Take ``chunk`` after the others, or raise having dropped what it wrote (the whole
        chunks before it are the caller's to :meth:`settle`)."""
        uploads, limit = self._uploads, self._staged.size
        upload_id = self._staged.id
        start = end = at = self.kept + len(self._whole)
        digest = hashlib.sha256()
        if isinstance(chunk.data, bytes):  # checked before anything is written
            check_size(start + len(chunk.data), limit, start)
            digest = await asyncio.to_thread(hashlib.sha256, chunk.data)
            check_sha256(digest.hexdigest(), chunk.sha256, start)
        written: list[tuple[int, int, str]] = []
        buffer = bytearray()  # the chunk's bytes not written yet
        try:
            async for piece in _pieces(chunk.data):
                end += len(piece)
                if not isinstance(chunk.data, bytes):
                    check_size(end, limit, start)
                    digest.update(piece)
                if end - at < uploads.segment_size:
                    buffer += piece
                    continue
                if self._whole:  # the chunks before keep a segment of their own
                    await self.flush()
                if not buffer and len(piece) >= uploads.segment_size:
                    written.append(await uploads._put(upload_id, at, piece))  # not copied
                else:
                    buffer += piece
                    if len(buffer) >= uploads.segment_size:
                        written.append(await uploads._put(upload_id, at, buffer))
                    else:
                        continue
                at = end
            if not isinstance(chunk.data, bytes):
                check_sha256(digest.hexdigest(), chunk.sha256, start)
            if written:  # a large chunk: kept at once, whole
                if buffer:
                    written.append(await uploads._put(upload_id, at, buffer))
                await self._keep(written, end)
            else:
                self._whole += buffer
                if len(self._whole) >= uploads.segment_size:
                    await self.flush()
        except BaseException:
            if written:  # shielded: a second cancellation does not stop it half-way
                await asyncio.shield(self._drop(written))
            raise

    @property
    def gathered(self) -> bool:
        return bool(self._whole)

    async def flush(self) -> None:
        """Write and keep the whole chunks gathered."""
        if self._whole:
            segment = await self._uploads._put(self._staged.id, self.kept, self._whole)
            try:
                await self._keep([segment], self.kept + segment[1])
            except BaseException:
                await asyncio.shield(self._drop([segment]))
                raise

    async def settle(self) -> None:
        """:meth:`flush` on the way out of a failed call: a failure is logged (the call's own
        error goes on; the client asks the offset)."""
        try:
            await self.flush()
        except Exception as exc:
            log.warning(
                "upload %s: the whole chunks from offset %d could not be kept: %s: %s",
                self._staged.id,
                self.kept,
                type(exc).__name__,
                exc,
            )

    async def _keep(self, written: list[tuple[int, int, str]], end: int) -> None:
        upload_id = self._staged.id
        async with self._uploads._store.transaction() as conn:
            moved = await conn.execute(
                staged_uploads.update()
                .where(
                    staged_uploads.c.id == upload_id,
                    staged_uploads.c.holder == self._token,
                    staged_uploads.c.kept == self.kept,
                )
                .values(kept=end, written_at=self._clock())
            )
            if moved.rowcount != 1:
                raise UploadConflict(
                    f"upload {upload_id} was taken over by another request while this chunk "
                    "arrived (this one stalled past its lease, or the upload was completed or "
                    "expired meanwhile); ask its offset and send from there"
                )
            if written:
                await conn.execute(
                    staged_segments.insert(),
                    [
                        {"upload_id": upload_id, "start": s, "size": n, "name": name}
                        for s, n, name in written
                    ],
                )
        self.kept = end

    async def _drop(self, written: list[tuple[int, int, str]]) -> None:
        uploads = self._uploads
        folder = uploads._folder(self._staged.id)
        with contextlib.suppress(StoreUnavailable):  # logged; the sweep deletes them
            await uploads._delete([folder + name for _, _, name in written])


class _Objects(io.RawIOBase):
    """The objects ``parts`` (key, size) read in turn as one stream, each checked to hold its
    size. Read in threads (blocking calls), as :meth:`S3MediaStore.open`'s body is."""

    def __init__(self, media: S3MediaStore, parts: list[tuple[str, int]]) -> None:
        self._media = media
        self._parts = iter(parts)
        self._body: Any = None
        self._key = ""
        self._left = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while True:
            if self._body is None and not self._next():
                return 0
            try:
                data = self._body.read(min(len(view), self._left)) if self._left else b""
            except (BotoCoreError, ClientError) as exc:
                raise self._media.unavailable("read a staged upload", exc) from None
            if data:
                view[: len(data)] = data
                self._left -= len(data)
                return len(data)
            if self._left:
                log.error("the staged object %s ends %d bytes short", self._key, self._left)
                raise StoreUnavailable(
                    "the media store returned a staged chunk short; retry in a moment"
                )
            self._body.close()
            self._body = None

    def _next(self) -> bool:
        part = next(self._parts, None)
        if part is None:
            return False
        self._key, self._left = part
        media = self._media
        try:
            answer = media.client.get_object(Bucket=media.bucket, Key=self._key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                # completed or dropped by another request meanwhile (its objects go last)
                raise NotFound(
                    "the upload was completed or dropped meanwhile; look for its media, or "
                    "create a new upload and send the file again"
                ) from None
            raise media.unavailable("read a staged upload", exc) from None
        except BotoCoreError as exc:
            raise media.unavailable("read a staged upload", exc) from None
        self._body = answer["Body"]
        return True

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
        super().close()


async def _pieces(data: bytes | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(data, bytes):
        yield data
    else:
        async for piece in data:
            yield piece


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
