"""``/v1/dead-letters``: messages given up on, and their replay."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from chat4all.domain.model import message_document
from chat4all.entrypoints.rest.answers import ADMIN, CURSOR, LIMIT, documented
from chat4all.entrypoints.rest.auth import Admin, Use
from chat4all.entrypoints.rest.models import DeadLetterPage, MessageOut

__all__ = ["router"]

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])


@router.get(
    "",
    operation_id="listDeadLetters",
    response_model=DeadLetterPage,
    responses=documented(*ADMIN, 422),
)
async def list_dead_letters(
    who: Admin,
    use: Use,
    cursor: Annotated[str | None, CURSOR] = None,
    limit: Annotated[int, LIMIT] = 50,
) -> dict[str, Any]:
    """Messages given up on, with the last error; replay them once the cause is fixed."""
    page = await use.dead_letters.list(who.tenant, cursor, limit)
    return {
        "items": [{"message": message_document(d.message), "error": d.error} for d in page.items],
        "next_cursor": page.next_cursor,
    }


@router.post(
    "/{message_id}/replay",
    operation_id="replayDeadLetter",
    status_code=202,
    response_model=MessageOut,
    responses=documented(*ADMIN, 404, 422),
)
async def replay_dead_letter(message_id: str, who: Admin, use: Use) -> dict[str, Any]:
    """Queue a dead letter for delivery again, from its first attempt."""
    return message_document(await use.dead_letters.replay(who.tenant, message_id))
