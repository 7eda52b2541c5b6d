"""``/v1/messages``: send a message, read one back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from chat4all.domain.model import Oversize, message_document
from chat4all.entrypoints.rest.answers import READ, documented
from chat4all.entrypoints.rest.auth import Reader, Sender, Use
from chat4all.entrypoints.rest.models import MessageOut, SendIn
from chat4all.ports import SendRequest

__all__ = ["router"]

router = APIRouter(prefix="/v1/messages", tags=["messages"])


@router.post(
    "",
    operation_id="sendMessage",
    status_code=202,
    response_model=MessageOut,
    responses={
        202: {
            "headers": {
                "Idempotent-Replayed": {
                    "description": "`true` when this answers an earlier request with the "
                    "same Idempotency-Key",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            }
        },
        **documented(401, 403, 409, 422, 429, sheds=True),
    },
)
async def send_message(
    body: SendIn,
    who: Sender,
    use: Use,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> JSONResponse:
    """Accept a message for delivery; 202 means it is durable."""
    channel = use.accounts.known(body.channel)
    request = SendRequest(
        channel,
        body.account,
        body.recipient,
        body.content.to_domain(),
        Oversize(body.oversize) if body.oversize else None,
    )
    accepted = await use.messages.send(who.tenant, request, idempotency_key)
    if use.wake is not None and not accepted.replayed:
        use.wake()
    headers = {"Idempotent-Replayed": "true"} if accepted.replayed else {}
    return JSONResponse(message_document(accepted.message), status_code=202, headers=headers)


@router.get(
    "/{message_id}",
    operation_id="getMessage",
    response_model=MessageOut,
    responses=documented(*READ, 404, 422),
)
async def get_message(message_id: str, who: Reader, use: Use) -> dict[str, Any]:
    """A message with its status history."""
    return message_document(await use.messages.get(who.tenant, message_id))
