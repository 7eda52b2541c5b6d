"""``/v1/channels``: the channels and accounts a key may use, and each channel account's
inbound webhook (where the provider calls us)."""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request, Response

from chat4all.entrypoints.rest.answers import READ, documented
from chat4all.entrypoints.rest.auth import Reader, Use
from chat4all.entrypoints.rest.models import ChannelList
from chat4all.ports import WebhookRequest

__all__ = ["router"]

router = APIRouter(prefix="/v1/channels", tags=["channels"])

# What a provider sends is its own format, read by its channel, so the webhook is documented
# once, generically: each channel's documentation says what its provider sends and expects.
_PROVIDER_CALL: Final[dict[str, Any]] = {
    "requestBody": {
        "required": False,
        "description": "The provider's call as it sends it (a JSON object, or other bytes); "
        "the channel checks its signature or secret and parses it",
        "content": {
            "application/json": {
                "schema": {"title": "ProviderEvent", "type": "object", "additionalProperties": True}
            },
            "application/octet-stream": {
                "schema": {"title": "ProviderBytes", "type": "string", "format": "binary"}
            },
        },
    }
}
_PROVIDER_REPLY: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "The channel's answer to its provider (a JSON object unless the channel "
        "answers otherwise, e.g. a verification challenge as plain text)",
        "content": {
            "application/json": {
                "schema": {"title": "ProviderReply", "type": "object", "additionalProperties": True}
            },
            "text/plain": {"schema": {"type": "string"}},
        },
    },
    **documented(401, 404, 422),
}


@router.get(
    "",
    operation_id="listChannels",
    response_model=ChannelList,
    responses=documented(*READ),
)
async def list_channels(who: Reader, use: Use) -> dict[str, Any]:
    """The channels this hub carries, each with the calling key's tenant's accounts on it
    (what a send's ``channel`` and ``account`` may name; a channel without an account of the
    tenant is listed with none)."""
    mine = use.accounts.of(who.tenant)
    return {
        "items": [
            {
                "name": name,
                "accounts": list(mine.get(name, ())),
                **use.messages.capabilities(name),
            }
            for name in use.accounts.channels()
        ]
    }


async def _provider_call(channel: str, account: str, request: Request, use: Use) -> Response:
    call = WebhookRequest(
        method=request.method,
        query=dict(request.query_params),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=await request.body(),
    )
    reply = await use.inbound.webhook(channel, account, call)
    return Response(reply.body, status_code=reply.status, media_type=reply.content_type)


@router.post(
    "/{channel}/{account}/webhook",
    operation_id="receiveChannelWebhook",
    response_class=Response,
    openapi_extra=_PROVIDER_CALL,
    responses=_PROVIDER_REPLY,
)
async def receive_channel_webhook(
    channel: str, account: str, request: Request, use: Use
) -> Response:
    """Where a channel's provider delivers what reaches our ``account`` (each channel's
    documentation says how to register this URL with its provider). Not for API clients: the
    provider's own signature or secret authenticates the call."""
    return await _provider_call(channel, account, request, use)


@router.get(
    "/{channel}/{account}/webhook",
    operation_id="verifyChannelWebhook",
    response_class=Response,
    responses=_PROVIDER_REPLY,
)
async def verify_channel_webhook(
    channel: str, account: str, request: Request, use: Use
) -> Response:
    """A provider's check of the webhook (a verification handshake), for the channels whose
    provider makes one."""
    return await _provider_call(channel, account, request, use)
