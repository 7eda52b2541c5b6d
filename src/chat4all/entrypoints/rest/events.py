"""``/v1/events``: the tenant's live events as server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from chat4all.entrypoints.rest.answers import READ, documented
from chat4all.entrypoints.rest.auth import Reader, Use
from chat4all.service_layer.events import Event

__all__ = ["router"]

router = APIRouter(prefix="/v1/events", tags=["events"])


class _Frames:
    """The SSE frame of the event last encoded: the bus hands the same :class:`Event` object
    to every stream of the tenant, so it is encoded once, not once per stream."""

    __slots__ = ("event", "frame")

    def __init__(self) -> None:
        self.event: Event | None = None
        self.frame = b""

    def __call__(self, event: Event) -> bytes:
        if event is not self.event:
            payload = json.dumps(event.data, separators=(",", ":"))
            self.frame = f"id: {event.id}\nevent: {event.type}\ndata: {payload}\n\n".encode()
            self.event = event
        return self.frame


_frame = _Frames()


@router.get(
    "",
    operation_id="streamEvents",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events until the client disconnects",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **documented(*READ),
    },
)
async def stream_events(who: Reader, use: Use) -> StreamingResponse:
    """Live events of the tenant as server-sent events (``message.status``,
    ``message.inbound``)."""

    # A client that goes away ends the stream through StreamingResponse's own watch for the
    # disconnect (or its failed send), even while no event comes: no check per event here.
    async def stream() -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        async for event in use.bus.subscribe(who.tenant):
            yield _frame(event)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
