"""``/v1/media``: upload a file, then send it by its id (an attachment's ``media_id``); download
a file by its id (an upload, or what someone sent to one of our accounts)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from chat4all.domain.model import Media
from chat4all.entrypoints.rest.answers import READ, documented
from chat4all.entrypoints.rest.auth import Reader, Sender, Use
from chat4all.entrypoints.rest.models import MediaOut
from chat4all.entrypoints.uploads import chunks_of, read_upload

__all__ = ["router", "public_router", "media_document"]

router = APIRouter(prefix="/v1/media", tags=["media"])
public_router = APIRouter(prefix="/v1/public/media", tags=["media"])
"""Public by design: a signed link (see :mod:`chat4all.service_layer.media_links`) is its own
authorisation, for providers that fetch an attachment by URL."""

# The body is read as a stream by read_upload (never whole in memory), so it is documented
# here rather than declared as parameters.
_UPLOAD_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "title": "MediaUpload",
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {"type": "string", "format": "binary", "minLength": 1},
                        "kind": {
                            "$ref": "#/components/schemas/AttachmentKind",
                            "description": "Default: from the file's type (JPEG, PNG, WebP: "
                            "image; MP4: video; MP3, M4A, OGG: audio; else document)",
                        },
                    },
                }
            }
        },
    }
}


def media_document(media: Media) -> dict[str, Any]:
    """An upload as clients see it (no tenant, no storage details)."""
    return {
        "id": media.id,
        "filename": media.filename,
        "mime_type": media.mime_type,
        "size": media.size,
        "sha256": media.sha256,
        "kind": media.kind,
    }


@router.post(
    "",
    operation_id="uploadMedia",
    status_code=201,
    response_model=MediaOut,
    openapi_extra=_UPLOAD_BODY,
    responses=documented(401, 403, 422, 429),
)
async def upload_media(request: Request, who: Sender, use: Use) -> JSONResponse:
    """Upload a file (multipart/form-data: ``file``, optional ``kind``) to send it by the
    returned id (an attachment's ``media_id``); at most CHAT4ALL_MEDIA_MAX_BYTES."""
    media = use.media
    form = await read_upload(
        request,
        file_field="file",
        fields=("kind",),
        max_bytes=media.max_bytes,
        too_big=media.too_big,
    )
    with form.file:
        stored = await media.upload(
            who.tenant,
            chunks_of(form.file),
            form.filename,
            form.content_type,
            form.fields.get("kind"),
        )
    return JSONResponse(media_document(stored), status_code=201)


@public_router.get(
    "/{token}",
    operation_id="getSignedMedia",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file"},
        **documented(404),
    },
)
async def signed_media(token: str, use: Use) -> StreamingResponse:
    """The file a signed link names, while the link is valid (no API key: the signature is the
    authorisation); 404 for a link that is bad, forged, expired, or whose media is gone."""
    return await _streamed(use.media.open_signed(token))


@router.get(
    "/{media_id}",
    operation_id="downloadMedia",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file"},
        **documented(*READ, 404),
    },
)
async def download_media(media_id: str, who: Reader, use: Use) -> StreamingResponse:
    """The bytes of one of the tenant's files: an upload, or an attachment someone sent to one
    of its accounts (an inbound message's ``attachments[].media_id``); 404 for another
    tenant's or none."""
    return await _streamed(use.media.open(who.tenant, media_id))


async def _streamed(
    opening: contextlib.AbstractAsyncContextManager[tuple[Media, Any]],
) -> StreamingResponse:
    """The file ``opening`` opens, streamed (never whole in memory) and closed at the end."""
    stack = contextlib.AsyncExitStack()
    media, handle = await stack.enter_async_context(opening)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks_of(handle):
                yield chunk
        finally:
            await stack.aclose()

    return StreamingResponse(
        body(),
        media_type=media.mime_type,
        headers={
            "content-length": str(media.size),
            "content-disposition": f"attachment; filename*=UTF-8''{quote(media.filename)}",
            "cache-control": "private, no-store",
        },
    )
