"""``/v1/conversations``: the tenant's conversations and their messages, a page at a time."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter

from chat4all.domain.model import message_document
from chat4all.entrypoints.rest.answers import CURSOR, LIMIT, READ, documented
from chat4all.entrypoints.rest.auth import Reader, Use
from chat4all.entrypoints.rest.models import ConversationPage, MessagePage

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
