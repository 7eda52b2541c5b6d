"""``/v1/events``: the tenant's live events as server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from chat4all.entrypoints.rest.answers import READ, documented
from chat4all.entrypoints.rest.auth import Reader, Use

__all__ = ["router"]

router = APIRouter(prefix="/v1/events", tags=["events"])


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
async def stream_events(who: Reader, use: Use, request: Request) -> StreamingResponse:
    """Live events of the tenant as server-sent events (``message.status``,
    ``message.inbound``)."""

    async def stream() -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        async for event in use.bus.subscribe(who.tenant):
            if await request.is_disconnected():
                return
            payload = json.dumps(event.data, separators=(",", ":"))
            yield f"id: {event.id}\nevent: {event.type}\ndata: {payload}\n\n".encode()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
