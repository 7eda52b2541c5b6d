"""Reading a multipart/form-data upload from a request as it arrives, onto disk.

FastAPI's ``UploadFile`` parses the whole body before the handler runs, with no limit on a
file's size; here the file part goes to a temporary file a megabyte at a time, and reading
stops at the first byte over the limit.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import IO, Any, Final

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from chat4all.errors import InvalidRequest

__all__ = ["Upload", "read_upload", "chunks_of"]

_FLUSH: Final = 1 << 20
"""Bytes of the file held in memory before they are written out."""
_SLACK: Final = 64 * 1024
"""What a form may add to its file (part headers, boundaries, small fields)."""
_FIELD_MAX: Final = 1024
_HOW: Final = "send the file as multipart/form-data in the field 'file' (curl -F file=@photo.jpg)"


@dataclass
class Upload:
    file: IO[bytes]
    """The file's bytes, positioned at the start; closing it deletes it."""
    filename: str | None
    content_type: str | None
    fields: dict[str, str]


@dataclass
class _Events:
    """What the push parser reported while it was fed a chunk, in order."""

    items: list[tuple[str, Any]] = field(default_factory=list)
    header_name: bytes = b""
    header_value: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._begin,
            "on_part_data": lambda data, start, end: self.items.append(("data", data[start:end])),
            "on_part_end": lambda: self.items.append(("end", None)),
            "on_header_field": self._name,
            "on_header_value": self._value,
            "on_header_end": self._header,
            "on_headers_finished": lambda: self.items.append(("part", dict(self.headers))),
        }

    def _begin(self) -> None:
        self.headers = {}

    def _name(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def _value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def _header(self) -> None:
        self.headers[self.header_name.lower()] = self.header_value
        self.header_name, self.header_value = b"", b""


async def read_upload(
    request: Request,
    *,
    file_field: str,
    fields: tuple[str, ...],
    max_bytes: int,
    too_big: Callable[[], Exception],
) -> Upload:
    """The one file in ``file_field`` and the small text ``fields`` of a multipart body;
    ``too_big()`` is raised as soon as the file passes ``max_bytes``."""
    kind, params = parse_options_header(request.headers.get("content-type"))
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidRequest(_HOW, field=file_field)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + _SLACK:
        raise too_big()
    events = _Events()
    parser = MultipartParser(params[b"boundary"], events.callbacks())
    out = await asyncio.to_thread(tempfile.TemporaryFile)
    upload = Upload(out, None, None, {})
    try:
        await _consume(request, parser, events, upload, file_field, fields, max_bytes, too_big)
    except ClientDisconnect:  # expected: the client gave up; nobody reads the answer
        out.close()
        raise InvalidRequest(
            "the client went away before the upload ended", field=file_field
        ) from None
    except BaseException:
        out.close()
        raise
    return upload


async def _consume(
    request: Request,
    parser: MultipartParser,
    events: _Events,
    upload: Upload,
    file_field: str,
    fields: tuple[str, ...],
    max_bytes: int,
    too_big: Callable[[], Exception],
) -> None:
    current: str | None = None
    seen_file = False
    pending = bytearray()
    size = 0
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            for event, value in events.items:
                if event == "part":
                    current, filename = _disposition(value)
                    if current == file_field:
                        if seen_file:
                            raise InvalidRequest("one file per upload", field=file_field)
                        seen_file = True
                        upload.filename = filename
                        content_type = value.get(b"content-type")
                        upload.content_type = (
                            content_type.decode("latin-1") if content_type else None
                        )
                    elif current in fields:
                        upload.fields[current] = ""
                    else:
                        raise InvalidRequest(
                            f"unknown form field {current!r}: the fields are "
                            + ", ".join((file_field, *fields)),
                            field=current,
                        )
                elif event == "data" and current == file_field:
                    size += len(value)
                    if size > max_bytes:
                        raise too_big()
                    pending += value
                    if len(pending) >= _FLUSH:
                        await asyncio.to_thread(upload.file.write, bytes(pending))
                        pending.clear()
                elif event == "data" and current is not None:
                    text = upload.fields[current] + value.decode("utf-8", "replace")
                    if len(text) > _FIELD_MAX:
                        raise InvalidRequest(f"{current} is too long", field=current)
                    upload.fields[current] = text
                elif event == "end":
                    current = None
            events.items.clear()
        parser.finalize()
    except MultipartParseError:
        raise InvalidRequest(
            f"the body is not valid multipart/form-data: {_HOW}", field=file_field
        ) from None
    if not seen_file:
        raise InvalidRequest(f"no file: {_HOW}", field=file_field)
    await asyncio.to_thread(_finish, upload.file, bytes(pending))


def _disposition(headers: dict[bytes, bytes]) -> tuple[str, str | None]:
    _, options = parse_options_header(headers.get(b"content-disposition"))
    if b"name" not in options:
        raise InvalidRequest(f"a form part has no name: {_HOW}")
    name = options[b"name"].decode("utf-8", "replace")
    filename = options.get(b"filename")
    return name, filename.decode("utf-8", "replace") if filename is not None else None


def _finish(out: IO[bytes], tail: bytes) -> None:
    out.write(tail)
    out.flush()
    out.seek(0)


async def chunks_of(file: IO[bytes], size: int = _FLUSH) -> AsyncIterator[bytes]:
    """``file``'s bytes from where it stands, read off the event loop."""
    while chunk := await asyncio.to_thread(file.read, size):
        yield chunk
