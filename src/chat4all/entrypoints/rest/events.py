"""``/v1/events``: the tenant's live events as server-sent events, resumable by
``Last-Event-ID``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from chat4all.entrypoints.rest.answers import READ, documented
from chat4all.entrypoints.rest.auth import Reader, Use
from chat4all.errors import InvalidRequest
from chat4all.service_layer.events import OVERFLOW, Event

__all__ = ["router"]

router = APIRouter(prefix="/v1/events", tags=["events"])


class _Frames:
    """The SSE frame of the event last encoded: the bus hands the same :class:`Event` object
    to every live stream of the tenant, so it is encoded once, not once per stream."""

    __slots__ = ("event", "frame")

    def __init__(self) -> None:
        self.event: Event | None = None
        self.frame = b""

    def __call__(self, event: Event) -> bytes:
        if event is not self.event:
            payload = json.dumps(event.data, separators=(",", ":"))
            ident = "" if event.type == OVERFLOW else f"id: {event.id}\n"
            self.frame = f"{ident}event: {event.type}\ndata: {payload}\n\n".encode()
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
async def stream_events(
    who: Reader,
    use: Use,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="The id of the last event received: the events after it are replayed "
            "first (browsers' EventSource sends it when it reconnects)",
        ),
    ] = None,
    after: Annotated[
        int | None,
        Query(
            alias="last_event_id",
            ge=0,
            description="The same as the Last-Event-ID header, for a client that cannot set "
            "headers (the header wins when both are given)",
        ),
    ] = None,
) -> StreamingResponse:
    """Live events of the tenant as server-sent events (``message.status``,
    ``message.inbound``), each with its ``id``. Reconnecting with ``Last-Event-ID`` (on any
    API process) replays the events missed meanwhile, then goes on live. A ``reset`` event:
    the events after that id are no longer kept; re-read through the list endpoints. An
    ``overflow`` event (no id): the client fell behind and the stream ends; reconnect."""
    if last_event_id is not None and last_event_id.strip():
        try:
            after = int(last_event_id)
        except ValueError:
            raise InvalidRequest(
                f"Last-Event-ID {last_event_id[:40]!r} is not an event id (the integer "
                "`id:` of an event this stream sent); omit it to start from now",
                field="Last-Event-ID",
            ) from None
        if after < 0:
            raise InvalidRequest("Last-Event-ID is not negative", field="Last-Event-ID")

    # A client that goes away ends the stream through StreamingResponse's own watch for the
    # disconnect (or its failed send), even while no event comes: no check per event here.
    async def stream() -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        async for event in use.events.follow(who.tenant, after):
            yield _frame(event)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
