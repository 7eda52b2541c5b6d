"""Inbound files into our media store: what a Meta channel downloads (a WhatsApp media id's
URL, a Messenger or Instagram attachment's CDN URL) is kept the same way."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from chat4all.domain.model import Media
from chat4all.ports import MediaStore

__all__ = ["keep"]

_KINDS = {"image": "image", "video": "video", "audio": "audio"}


async def keep(
    store: MediaStore, tenant: str, name: str, mime: str, chunks: AsyncIterator[bytes]
) -> Media:
    """``chunks`` (a download of ``mime``) stored for ``tenant`` as ``name`` plus the MIME
    type's extension, streamed (never whole in memory); its kind from the MIME type (image,
    video, audio, else document)."""
    mime = mime.split(";", 1)[0].strip() or "application/octet-stream"
    kind = _KINDS.get(mime.split("/", 1)[0], "document")
    extension = mime.split("/", 1)[-1]
    return await store.put(
        tenant,
        chunks,
        filename=f"{name}.{extension}",
        mime_type=mime,
        kind=kind,
        now=time.time(),
    )
