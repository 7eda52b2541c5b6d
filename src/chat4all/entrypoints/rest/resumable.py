"""``/v1/uploads``: a resumable, chunked upload (tus-like) for files too large for one request.

Create it with its size (and optionally its sha256), ``PATCH`` the bytes at ``Upload-Offset``
in as many requests as needed (each may carry ``Upload-Checksum: sha256 <base64>``), ask
``HEAD`` (or ``GET``) where it stands after a disconnect, then ``POST .../complete``: it becomes
a media like ``POST /v1/media``. The bytes are streamed to the upload staging (the disk, or the
S3 bucket: :class:`~chat4all.ports.UploadStaging`), never held whole in memory.
A ``PATCH`` at a stale offset, or while another one of the same upload is arriving, is 409.
gRPC's ``CreateUpload`` ... call the same :class:`~chat4all.service_layer.media.MediaLibrary`
methods.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from chat4all.entrypoints.rest.answers import documented
from chat4all.entrypoints.rest.auth import Sender, Use
from chat4all.entrypoints.rest.media import media_document
from chat4all.entrypoints.rest.models import AttachmentKind, ErrorBody, MediaOut
from chat4all.errors import InvalidRequest
from chat4all.ports import Chunk, Staged

__all__ = ["router"]

router = APIRouter(prefix="/v1/uploads", tags=["media"])


class UploadCreate(BaseModel):
    size: int = Field(gt=0, description="The file's size in bytes")
    filename: str | None = Field(default=None, max_length=1024)
    mime_type: str | None = Field(default=None, max_length=255)
    kind: AttachmentKind | None = None
    sha256: str | None = Field(
        default=None, description="The whole file's SHA-256 (hex), checked at completion"
    )


class UploadOut(BaseModel):
    id: str
    size: int
    offset: int = Field(description="Bytes received so far: send the next chunk from here")
    filename: str
    mime_type: str


def _document(staged: Staged, offset: int) -> dict[str, Any]:
    return {
        "id": staged.id,
        "size": staged.size,
        "offset": offset,
        "filename": staged.filename,
        "mime_type": staged.mime_type,
    }


def _headers(staged: Staged, offset: int) -> dict[str, str]:
    return {
        "Upload-Offset": str(offset),
        "Upload-Length": str(staged.size),
        "Cache-Control": "no-store",
    }


@router.post(
    "",
    operation_id="createUpload",
    status_code=201,
    response_model=UploadOut,
    responses=documented(401, 403, 422, 429),
)
async def create_upload(body: UploadCreate, who: Sender, use: Use) -> JSONResponse:
    """Declare a resumable upload (at most CHAT4ALL_MEDIA_MAX_BYTES); its bytes follow by
    ``PATCH /v1/uploads/{id}``."""
    staged = await use.media.create_upload(
        who.tenant, body.size, body.filename, body.mime_type, body.kind, body.sha256
    )
    return JSONResponse(
        _document(staged, 0),
        status_code=201,
        headers={**_headers(staged, 0), "Location": f"/v1/uploads/{staged.id}"},
    )


@router.get(
    "/{upload_id}",
    operation_id="getUpload",
    response_model=UploadOut,
    responses=documented(401, 403, 404, 429),
)
async def get_upload(upload_id: str, who: Sender, use: Use) -> JSONResponse:
    """Where an upload stands (also as ``HEAD``, in ``Upload-Offset``)."""
    staged, offset = await use.media.upload_offset(who.tenant, upload_id)
    return JSONResponse(_document(staged, offset), headers=_headers(staged, offset))


@router.head("/{upload_id}", include_in_schema=False)
async def head_upload(upload_id: str, who: Sender, use: Use) -> Response:
    staged, offset = await use.media.upload_offset(who.tenant, upload_id)
    return Response(status_code=200, headers=_headers(staged, offset))


def _chunk_sha256(header: str | None) -> str | None:
    """``sha256 <base64 digest>`` (tus' checksum extension) as hex."""
    if header is None:
        return None
    algorithm, _, value = header.strip().partition(" ")
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if algorithm.lower() != "sha256" or len(digest) != 32:
        raise InvalidRequest(
            "Upload-Checksum must be 'sha256 <base64 of the chunk's SHA-256>'",
            field="Upload-Checksum",
        )
    return digest.hex()


@router.patch(
    "/{upload_id}",
    operation_id="appendUpload",
    status_code=204,
    responses={
        **documented(401, 403, 404, 422, 429),
        409: {
            "model": ErrorBody,
            "description": "`Upload-Offset` is not the upload's offset (the message names it), "
            "or another request is sending a chunk of this upload now",
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def append_upload(
    upload_id: str,
    request: Request,
    who: Sender,
    use: Use,
    upload_offset: Annotated[int, Header(ge=0, description="Where this chunk starts")],
    upload_checksum: Annotated[
        str | None, Header(description="sha256 <base64 of the chunk's SHA-256>")
    ] = None,
) -> Response:
    """Add the body's bytes at ``Upload-Offset`` (the upload's current offset, else 409); a
    chunk cut short or with a wrong checksum is not kept. One chunk at a time: another
    ``PATCH`` of the same upload meanwhile is 409. Answers the new ``Upload-Offset``."""
    checksum = _chunk_sha256(upload_checksum)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            if chunk:
                yield chunk

    try:
        offset = await use.media.append(
            who.tenant, upload_id, upload_offset, Chunk(body(), checksum)
        )
    except ClientDisconnect:  # expected: the client resumes from HEAD's offset
        raise InvalidRequest(
            "the client went away mid-chunk; ask HEAD /v1/uploads/{id} for the offset",
            field="body",
        ) from None
    return Response(status_code=204, headers={"Upload-Offset": str(offset)})


@router.post(
    "/{upload_id}/complete",
    operation_id="completeUpload",
    status_code=201,
    response_model=MediaOut,
    responses=documented(401, 403, 404, 422, 429),
)
async def complete_upload(upload_id: str, who: Sender, use: Use) -> JSONResponse:
    """Once every byte is in: check the size and the declared sha256, and make it a media
    (send it by its ``id`` as an attachment's ``media_id``)."""
    media = await use.media.finish(who.tenant, upload_id)
    return JSONResponse(media_document(media), status_code=201)
