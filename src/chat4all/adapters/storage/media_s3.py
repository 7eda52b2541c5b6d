"""Uploaded media in an S3-compatible bucket (Amazon S3, MinIO, Ceph, R2 ...), with the same
metadata rows as :class:`~chat4all.adapters.storage.media.FileMediaStore` (``CHAT4ALL_MEDIA_BACKEND
=s3``; the ``s3`` extra).

Objects are addressed by their content like the files of the file store:
``<S3_PREFIX><tenant>/<sha256[:2]>/<sha256>`` (:func:`~chat4all.adapters.storage.media.
content_path`), so a tenant uploading the same bytes twice stores them once and two tenants never
share an object; each upload still gets its own row (id, name, type).

- A file smaller than one part (``S3_PART_SIZE``, 8 MiB) is held in memory, then goes in one PUT
  straight to its key (nothing is sent when the same bytes are there already).
- A larger one streams as a multipart upload under a staging key ``<S3_PREFIX>.incoming/<random>``
  (its address is known only at its end): parts are cut from the incoming chunks, one is sent
  while the next is read, so at most two parts are in memory whatever the size. Once complete
  it is copied, inside the bucket, to its key (unless the same bytes are there already) and the
  staging object deleted.
- Any failure on the way (the incoming chunks raising, a refused part, the request cancelled)
  aborts the multipart upload, so no parts are left in the bucket; nothing gets a row. A
  process killed outright leaves its parts to the bucket's lifecycle rule
  (``AbortIncompleteMultipartUpload``, see docs/chat4all-operations.md).

The client is boto3's (the AWS SDK), whose blocking calls run in threads: the body it streams
back is a plain file object, which is what :meth:`S3MediaStore.open` yields (the signed-link
route and the channels' HTTP clients read it in threads, as they read files). S3 that cannot
answer is :class:`~chat4all.errors.StoreUnavailable` (a 503 to the caller, the detail in the
log); at start, :meth:`S3MediaStore.check` says what is wrong with the settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, BinaryIO, Final, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from chat4all.adapters.storage.media import MediaRows, content_path
from chat4all.adapters.storage.sql import SqlStore
from chat4all.domain.model import Media
from chat4all.errors import NotFound, StoreUnavailable

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_s3.type_defs import CompletedPartTypeDef

    from chat4all.config import Settings

__all__ = ["S3MediaStore", "s3_client", "DEFAULT_PART_SIZE"]

log = logging.getLogger(__name__)

T = TypeVar("T")

MIB: Final = 1024 * 1024
DEFAULT_PART_SIZE: Final = 8 * MIB
MIN_PART_SIZE: Final = 5 * MIB
"""S3's smallest part (but the last)."""
STAGING: Final = ".incoming/"
"""Where multipart uploads are staged, under the prefix (no tenant's folder starts with a dot)."""
_MISSING: Final = frozenset({"404", "NoSuchKey", "NotFound"})


def s3_client(settings: Settings) -> S3Client:
    """A client of the bucket's service as ``settings`` say (``S3_*``)."""
    secret = settings.S3_SECRET_ACCESS_KEY
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.S3_ENDPOINT_URL or None,
        region_name=settings.S3_REGION or None,
        aws_access_key_id=settings.S3_ACCESS_KEY_ID or None,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
        config=Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=16,
            # checksums only where S3 requires them: the SDK's default (since 2025) sends
            # headers that several S3-compatible services refuse; we hash every byte ourselves
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


class S3MediaStore:
    """:class:`~chat4all.ports.MediaStore` on an S3-compatible bucket and the hub's database."""

    def __init__(
        self,
        store: SqlStore,
        client: S3Client,
        bucket: str,
        *,
        prefix: str = "",
        part_size: int = DEFAULT_PART_SIZE,
        endpoint: str = "",
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"parts are at least {MIN_PART_SIZE} bytes")
        self._rows = MediaRows(store)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size
        self.where = f"bucket {bucket!r} at {endpoint or 'Amazon S3'}"
        """The bucket and its service, for the operator's messages."""

    @classmethod
    def from_settings(cls, store: SqlStore, settings: Settings) -> S3MediaStore:
        return cls(
            store,
            s3_client(settings),
            settings.S3_BUCKET,
            prefix=settings.S3_PREFIX,
            part_size=settings.S3_PART_SIZE,
            endpoint=settings.S3_ENDPOINT_URL,
        )

    def key(self, tenant: str, sha256: str) -> str:
        """The object key of a tenant's bytes of ``sha256``."""
        return self.prefix + content_path(tenant, sha256)

    async def check(self) -> None:
        """:class:`StoreUnavailable` saying what to correct unless the bucket answers (it
        exists, these credentials may use it)."""
        try:
            await asyncio.to_thread(self.client.head_bucket, Bucket=self.bucket)
        except ClientError as exc:
            code = _code(exc)
            if code in {"404", "NoSuchBucket", "NotFound"}:
                hint = "create it, or correct CHAT4ALL_S3_BUCKET"
            elif code in {"403", "AccessDenied", "Forbidden"}:
                hint = (
                    "these credentials may not use it: check CHAT4ALL_S3_ACCESS_KEY_ID and "
                    "CHAT4ALL_S3_SECRET_ACCESS_KEY (and the bucket's policy)"
                )
            else:
                hint = "check the CHAT4ALL_S3_* settings"
            raise StoreUnavailable(
                f"the media {self.where} answers {_described(exc)}: {hint}"
            ) from None
        except NoCredentialsError:
            raise StoreUnavailable(
                f"no credentials for the media {self.where}: set CHAT4ALL_S3_ACCESS_KEY_ID and "
                "CHAT4ALL_S3_SECRET_ACCESS_KEY (or the AWS SDK's own: environment, role)"
            ) from None
        except BotoCoreError as exc:
            raise StoreUnavailable(
                f"cannot reach the media {self.where}: {type(exc).__name__}: {exc}; check "
                "CHAT4ALL_S3_ENDPOINT_URL and CHAT4ALL_S3_REGION, and that it is up"
            ) from None

    def close(self) -> None:
        self.client.close()

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
        digest = hashlib.sha256()
        size = 0
        pending: list[bytes] = []  # the next part's chunks (joined once, when it is sent)
        pending_size = 0
        upload: _Multipart | None = None
        try:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= self.part_size:
                    if upload is None:
                        upload = _Multipart(self)
                    await upload.send(pending)
                    pending_size = 0
            sha256 = digest.hexdigest()
            key = self.key(tenant, sha256)
            if upload is None:
                if not await self._exists(key):
                    await self.call(
                        "store a file",
                        self.client.put_object,
                        Bucket=self.bucket,
                        Key=key,
                        Body=bytearray().join(pending),
                    )
            else:
                if pending:
                    await upload.send(pending)
                await upload.complete()
                if not await self._exists(key):
                    await self.call(
                        "store a file",
                        self.client.copy_object,
                        Bucket=self.bucket,
                        Key=key,
                        CopySource={"Bucket": self.bucket, "Key": upload.key},
                    )
                await upload.drop()  # the staged copy (a failure to is only logged)
        except BaseException:
            if upload is not None:
                # shielded: a second cancellation does not stop the clean-up half-way
                await asyncio.shield(upload.drop())
            raise
        return await self._rows.add(
            tenant, sha256, size, filename=filename, mime_type=mime_type, kind=kind, now=now
        )

    async def get(self, tenant: str, media_id: str) -> Media:
        return await self._rows.get(tenant, media_id)

    @contextlib.asynccontextmanager
    async def open(self, tenant: str, media_id: str) -> AsyncIterator[tuple[Media, BinaryIO]]:
        media = await self.get(tenant, media_id)
        key = self.key(tenant, media.sha256)
        try:
            answer = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) not in _MISSING:
                raise self.unavailable("read a file", exc) from None
            # the key is the operator's to know, not the tenant's
            log.error("media %s has no object %s in the %s any more", media_id, key, self.where)
            raise NotFound(f"media {media_id!r} has no file any more; upload it again") from None
        except BotoCoreError as exc:
            raise self.unavailable("read a file", exc) from None
        # buffered as a file is (reads of any size); unseekable: read once, from the start.
        # The body is a raw stream in all but name (readable, readinto, close).
        handle = io.BufferedReader(cast("io.RawIOBase", answer["Body"]), buffer_size=MIB)
        try:
            yield media, handle
        finally:
            handle.close()

    async def _exists(self, key: str) -> bool:
        try:
            await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise self.unavailable("look a file up", exc) from None
        except BotoCoreError as exc:
            raise self.unavailable("look a file up", exc) from None
        return True

    async def call(self, doing: str, call: Callable[..., T], /, **kwargs: Any) -> T:
        """``call(**kwargs)`` in a thread; what S3 refuses is :class:`StoreUnavailable`."""
        try:
            return await asyncio.to_thread(call, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise self.unavailable(doing, exc) from None

    def unavailable(self, doing: str, exc: Exception) -> StoreUnavailable:
        """The caller is told to retry; the operator's log says what S3 said (the caller sees
        neither the bucket nor its keys)."""
        log.warning("media store: could not %s in the %s: %s", doing, self.where, _described(exc))
        return StoreUnavailable(
            f"the media store cannot {doing} now ({_code(exc) or type(exc).__name__}); "
            "retry in a moment"
        )


class _Multipart:
    """One multipart upload to a staging key, started with its first part: parts sent one at
    a time, each while the next is read. Each call to S3 runs as the one operation in flight,
    shielded from cancellation (its thread would go on regardless), so :meth:`drop` knows
    what reached the bucket and leaves nothing of it there."""

    def __init__(self, owner: S3MediaStore) -> None:
        self._owner = owner
        self.key = f"{owner.prefix}{STAGING}{secrets.token_hex(16)}"
        self._id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._sending: asyncio.Future[None] | None = None
        self._completed = False

    async def send(self, pieces: list[bytes]) -> None:
        """Start sending ``pieces`` (emptied) as the next part, once the previous one is in:
        so at most two parts are in memory, the one sent and the one gathered."""
        await self._sent()
        if self._id is None:
            await self._do(self._begin)
        data = bytearray().join(pieces)  # a bytearray body is sent as is (bytes get copied)
        pieces.clear()
        self._sending = asyncio.ensure_future(self._part(len(self._parts) + 1, data))

    async def complete(self) -> None:
        await self._do(self._complete)

    async def drop(self) -> None:
        """Leave nothing of it in the bucket: the upload aborted (its call in flight first let
        finish, else S3 may keep a part), or the staging object deleted once complete (copied
        to its key, or on a failure after). A failure here is logged, not raised: the bucket's
        lifecycle rule is then the last resort."""
        if self._sending is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):  # maybe why we are here
                await self._sending
        owner = self._owner
        try:
            if self._completed:
                await owner.call(
                    "delete a staged file",
                    owner.client.delete_object,
                    Bucket=owner.bucket,
                    Key=self.key,
                )
            elif self._id is not None:
                await owner.call(
                    "abort storing a file",
                    owner.client.abort_multipart_upload,
                    Bucket=owner.bucket,
                    Key=self.key,
                    UploadId=self._id,
                )
        except StoreUnavailable:  # the reason is logged; the original error goes on
            log.warning(
                "media store: the staged upload %s is left in the %s (its lifecycle rule "
                "clears it)",
                self.key,
                owner.where,
            )

    async def _do(self, call: Callable[[], Awaitable[None]]) -> None:
        """``call()`` as the operation in flight, waited for."""
        await self._sent()
        self._sending = asyncio.ensure_future(call())
        await self._sent()

    async def _sent(self) -> None:
        """Wait for the operation in flight (shielded; it stays in flight for
        :meth:`drop` until it is over)."""
        if self._sending is not None:
            await asyncio.shield(self._sending)
            self._sending = None

    async def _begin(self) -> None:
        owner = self._owner
        answer = await owner.call(
            "start storing a file",
            owner.client.create_multipart_upload,
            Bucket=owner.bucket,
            Key=self.key,
            ContentType="application/octet-stream",
        )
        self._id = answer["UploadId"]

    async def _part(self, number: int, data: bytearray) -> None:
        owner = self._owner
        assert self._id is not None
        answer = await owner.call(
            "store a part of a file",
            owner.client.upload_part,
            Bucket=owner.bucket,
            Key=self.key,
            UploadId=self._id,
            PartNumber=number,
            Body=data,
        )
        # emptied at once: the HTTP client keeps its last request until its next one
        data.clear()
        self._parts.append({"ETag": answer["ETag"], "PartNumber": number})

    async def _complete(self) -> None:
        owner = self._owner
        assert self._id is not None
        await owner.call(
            "store a file",
            owner.client.complete_multipart_upload,
            Bucket=owner.bucket,
            Key=self.key,
            UploadId=self._id,
            MultipartUpload={"Parts": self._parts},
        )
        self._completed = True


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _described(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '?')} ({error.get('Message', '').strip() or 'no message'})"
    return f"{type(exc).__name__}: {exc}"
