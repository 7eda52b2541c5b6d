"""``/v1/settings``: the calling key's tenant's settings (an admin changes them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from chat4all.entrypoints.rest.answers import ADMIN, documented
from chat4all.entrypoints.rest.auth import Admin, Use
from chat4all.entrypoints.rest.models import SettingsIn, SettingsOut

__all__ = ["router"]

router = APIRouter(prefix="/v1/settings", tags=["settings"])


@router.get(
    "",
    operation_id="getSettings",
    response_model=SettingsOut,
    responses=documented(*ADMIN),
)
async def get_settings(who: Admin, use: Use) -> dict[str, Any]:
    """The tenant's settings (defaults for those never changed)."""
    settings = await use.tenants.settings(who.tenant)
    return {"oversize": settings.oversize.value}


@router.patch(
    "",
    operation_id="updateSettings",
    response_model=SettingsOut,
    responses=documented(*ADMIN, 422),
)
async def update_settings(body: SettingsIn, who: Admin, use: Use) -> dict[str, Any]:
    """Change the settings given; the answer has them all. ``oversize: link`` is refused (422,
    with the setting to set) on a hub that has no public URL for media links."""
    oversize = body.oversize.value if body.oversize else None
    settings = await use.tenants.update(who.tenant, oversize, actor=who.key_id)
    return {"oversize": settings.oversize.value}
