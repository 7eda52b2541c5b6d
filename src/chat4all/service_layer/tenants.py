"""Use case of a tenant's settings: what an admin of the tenant reads and changes through the API
(REST ``/v1/settings``, gRPC ``GetSettings``/``UpdateSettings``), and what sends consult.

A tenant that never changed a setting has the defaults; only changed settings are stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from chat4all.domain.model import Oversize
from chat4all.errors import InvalidRequest
from chat4all.ports import TenantSettingsStore
from chat4all.service_layer.access import AuditTrail
from chat4all.service_layer.media_links import MediaLinks

__all__ = ["Tenants", "TenantSettings", "DEFAULT_OVERSIZE", "oversize_of"]

DEFAULT_OVERSIZE: Final = Oversize.REJECT
"""An upload over a channel's limit is refused unless the tenant (or the send) asks for a link."""


@dataclass(frozen=True, slots=True)
class TenantSettings:
    oversize: Oversize
    """What an upload over a channel's limit for its kind becomes (see :class:`Oversize`)."""


def oversize_of(value: str | None) -> Oversize | None:
    """``value`` as a policy (``None`` or empty: none given); 422 on field ``oversize``."""
    if not value:
        return None
    try:
        return Oversize(value)
    except ValueError:
        raise InvalidRequest(
            f"oversize must be one of {', '.join(p.value for p in Oversize)}", field="oversize"
        ) from None


class Tenants:
    def __init__(
        self,
        store: TenantSettingsStore,
        links: MediaLinks | None = None,
        clock: Callable[[], float] = time.time,
        audit: AuditTrail | None = None,
    ) -> None:
        """``links``: whether this hub can send links (a tenant cannot choose ``link`` when it
        cannot); ``audit``: where each change is recorded (who, what, from and to)."""
        self._audit = audit
        self._store = store
        self._links = links if links is not None else MediaLinks(None)
        self._clock = clock

    async def oversize(self, tenant: str) -> Oversize:
        return await self._store.oversize(tenant) or DEFAULT_OVERSIZE

    async def settings(self, tenant: str) -> TenantSettings:
        return TenantSettings(oversize=await self.oversize(tenant))

    async def update(
        self, tenant: str, oversize: str | None = None, actor: str | None = None
    ) -> TenantSettings:
        """Change the settings given (``None``: unchanged) as ``actor`` (a key id, for the
        audit log); 422 naming the field for a value that is not one, or ``link`` on a hub that
        cannot make links (with the setting to set)."""
        policy = oversize_of(oversize)
        if policy is not None:
            if policy is Oversize.LINK and self._links.refusal is not None:
                raise InvalidRequest(self._links.refusal, field="oversize")
            before = await self.oversize(tenant)
            await self._store.set_oversize(tenant, policy, self._clock())
            if self._audit is not None and before is not policy:
                await self._audit.append(
                    "settings_changed", tenant, actor, f"oversize {before.value} -> {policy.value}"
                )
        return await self.settings(tenant)
