"""``/v1/conversations``: the tenant's conversations and their messages, a page at a time."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Response

from chat4all.domain.model import message_document
from chat4all.entrypoints.rest.answers import CURSOR, LIMIT, READ, documented
from chat4all.entrypoints.rest.auth import Reader, Sender, Use
from chat4all.entrypoints.rest.models import ActionIn, ConversationPage, MessagePage

__all__ = ["router"]

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


@router.get(
    "",
    operation_id="listConversations",
    response_model=ConversationPage,
    responses=documented(*READ, 422),
)
async def list_conversations(
    who: Reader,
    use: Use,
    cursor: Annotated[str | None, CURSOR] = None,
    limit: Annotated[int, LIMIT] = 50,
) -> dict[str, Any]:
    """The tenant's conversations, most recent first, a page at a time."""
    page = await use.messages.conversations(who.tenant, cursor, limit)
    return {"items": [asdict(c) for c in page.items], "next_cursor": page.next_cursor}


@router.get(
    "/{conversation_id}/messages",
    operation_id="listConversationMessages",
    response_model=MessagePage,
    responses=documented(*READ, 404, 422),
)
async def list_conversation_messages(
    conversation_id: str,
    who: Reader,
    use: Use,
    cursor: Annotated[str | None, CURSOR] = None,
    limit: Annotated[int, LIMIT] = 50,
) -> dict[str, Any]:
    """The conversation's messages in send order, a page at a time."""
    page = await use.messages.history(who.tenant, conversation_id, cursor, limit)
    return {"items": [message_document(m) for m in page.items], "next_cursor": page.next_cursor}


@router.post(
    "/{conversation_id}/actions",
    operation_id="conversationAction",
    status_code=204,
    response_class=Response,
    responses=documented(401, 403, 404, 422, 429),
)
async def conversation_action(
    conversation_id: str, body: ActionIn, who: Sender, use: Use
) -> Response:
    """Typing on/off or mark-read in the conversation, done now through its channel (not a
    message: nothing is stored). 422 when the channel does not do that action (GET
    /v1/channels lists each channel's), 503 with ``Retry-After`` when the provider cannot now."""
    await use.actions.act(who.tenant, conversation_id, body.action.value)
    return Response(status_code=204)
