"""``/v1/subscriptions``: client webhooks (events POSTed to the tenant's URLs, signed)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from chat4all.entrypoints.rest.answers import ADMIN, documented
from chat4all.entrypoints.rest.auth import Admin, Use
from chat4all.entrypoints.rest.models import NewSubscription, SubscriptionIn, SubscriptionList

__all__ = ["router"]

router = APIRouter(prefix="/v1/subscriptions", tags=["webhooks"])


@router.post(
    "",
    operation_id="createSubscription",
    status_code=201,
    response_model=NewSubscription,
    responses=documented(*ADMIN, 422),
)
async def create_subscription(body: SubscriptionIn, who: Admin, use: Use) -> dict[str, Any]:
    """Subscribe a URL to events; the signing secret is in this answer only."""
    sub, secret = await use.subscriptions.subscribe(
        who.tenant, body.url, tuple(e.value for e in body.events)
    )
    return {**asdict(sub), "secret": secret}


@router.get(
    "",
    operation_id="listSubscriptions",
    response_model=SubscriptionList,
    responses=documented(*ADMIN),
)
async def list_subscriptions(who: Admin, use: Use) -> dict[str, Any]:
    """The tenant's subscriptions (without their secrets)."""
    return {"items": [asdict(s) for s in await use.subscriptions.of(who.tenant)]}


@router.delete(
    "/{subscription_id}",
    operation_id="deleteSubscription",
    status_code=204,
    response_class=Response,
    responses=documented(*ADMIN, 404, 422),
)
async def delete_subscription(subscription_id: str, who: Admin, use: Use) -> Response:
    """Stop a subscription; its queued deliveries are dropped."""
    await use.subscriptions.unsubscribe(who.tenant, subscription_id)
    return Response(status_code=204)
