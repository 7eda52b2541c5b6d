"""``/v1/channels``: the channels and accounts a key may use, each channel account's inbound
webhook (where the provider calls us), and (admin) its accounts' pauses and their resume."""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request, Response

from chat4all.entrypoints.rest.answers import ADMIN, READ, documented
from chat4all.entrypoints.rest.auth import Admin, Reader, Use
from chat4all.entrypoints.rest.models import ChannelAccountList, ChannelList, ResumedOut, ResumeIn
from chat4all.entrypoints.services import Services
from chat4all.errors import NotFound
from chat4all.ports import WebhookRequest
from chat4all.service_layer.channel_accounts import ChannelAccounts

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


def _channel_accounts(use: Services) -> ChannelAccounts:
    if use.channel_accounts is None:
        raise NotFound("channel accounts are not managed by this hub")
    return use.channel_accounts


@router.get(
    "/{channel}/accounts",
    operation_id="listChannelAccounts",
    response_model=ChannelAccountList,
    responses=documented(*ADMIN, 404, 422),
)
async def list_channel_accounts(channel: str, who: Admin, use: Use) -> dict[str, Any]:
    """The calling key's tenant's accounts on ``channel``, each paused (and why) or not. An
    account pauses when its provider refuses its credentials (an expired
    or revoked token); its messages then wait, neither sent nor failed."""
    states = _channel_accounts(use).states(who.tenant, channel)
    return {"items": [{"name": s.name, "paused": s.paused, "reason": s.reason} for s in states]}


@router.post(
    "/{channel}/{account}/resume",
    operation_id="resumeChannelAccount",
    response_model=ResumedOut,
    responses=documented(*ADMIN, 404, 422),
)
async def resume_channel_account(
    channel: str, account: str, who: Admin, use: Use, body: ResumeIn | None = None
) -> dict[str, Any]:
    """Resume a paused account, optionally with a new access token (which lasts until the hub
    restarts: replace it in the settings too); its waiting messages go out now, in order.
    Audited. Resuming an account that is not paused changes nothing but the token."""
    token = body.access_token.get_secret_value() if body and body.access_token else None
    state = await _channel_accounts(use).resume(who, channel, account, token)
    return {"name": state.name, "paused": state.paused, "reason": None, "released": state.released}


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
