"""Use case of actions that are not messages (typing on/off, mark-read) in a conversation.

They are done at once through the channel's connector (not queued: a typing indicator shown
late is worse than none), and only where the channel declares them (``Limits.actions``):
anything else is a 422 naming the channel and what it does. REST and gRPC call :meth:`act`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from chat4all.domain.model import Conversation
from chat4all.errors import (
    ChannelUnavailable,
    InvalidRequest,
    PermanentDelivery,
    RetryableDelivery,
)
from chat4all.plugin import Limits
from chat4all.ports import ACTIONS, Action, ActionRequest, Connector

__all__ = ["Actions", "ConversationLookup"]


class ConversationLookup(Protocol):
    async def conversation(
        self, tenant: str, conversation_id: str
    ) -> tuple[Conversation, str | None]:
        """The conversation and the provider's id of the latest message received in it;
        ``NotFound`` when ``tenant`` has no such conversation."""
        ...


class Actions:
    def __init__(
        self,
        store: ConversationLookup,
        connectors: Mapping[str, Connector],
        limits: Mapping[str, Limits],
    ) -> None:
        """``connectors``: held, not copied (the simulated ones are swapped in place)."""
        self._store = store
        self._connectors = connectors
        self._limits = limits

    async def act(self, tenant: str, conversation_id: str, action: str) -> Action:
        """Do ``action`` in ``tenant``'s conversation now; the provider's failure is the
        connector's ``RetryableDelivery`` is :class:`ChannelUnavailable` (503, retry), its
        ``PermanentDelivery`` an :class:`InvalidRequest` (422) with the provider's reason."""
        if action not in ACTIONS:
            raise InvalidRequest(f"action must be one of {', '.join(ACTIONS)}", field="action")
        wanted = Action(action)
        conversation, last_inbound = await self._store.conversation(tenant, conversation_id)
        channel = conversation.channel
        limits = self._limits.get(channel)
        connector = self._connectors.get(channel)
        act = getattr(connector, "act", None)
        if limits is None or act is None or wanted.value not in limits.actions:
            does = sorted(limits.actions) if limits is not None and act is not None else []
            raise InvalidRequest(
                f"{channel} does not do {wanted.value}"
                + (f"; it does {', '.join(does)}" if does else "; it does no actions"),
                field="action",
            )
        try:
            await act(conversation, ActionRequest(wanted, last_inbound))
        except RetryableDelivery as exc:
            raise ChannelUnavailable(
                f"{channel} {wanted.value}: {exc}; try again", exc.retry_after or 1.0
            ) from None
        except PermanentDelivery as exc:
            raise InvalidRequest(
                f"{channel} refused {wanted.value}: {exc}", field="action"
            ) from None
        return wanted
