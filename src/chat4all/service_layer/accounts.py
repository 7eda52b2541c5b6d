"""Which tenant owns each of our channel accounts (a bot, a phone number, a page).

A tenant sends only through its own accounts, and what reaches an account is stored for its
owner: one tenant's key can never make another tenant's bot speak or read its mail.
"""

from __future__ import annotations

from collections.abc import Mapping

from chat4all.domain.model import Channel
from chat4all.errors import InvalidRequest, NotFound

__all__ = ["Accounts"]


class Accounts:
    def __init__(self, owners: Mapping[tuple[Channel, str], str]) -> None:
        self._owners = dict(owners)

    def owner(self, channel: Channel, account: str) -> str:
        """The tenant of ``account``; :class:`NotFound` for an account not configured here."""
        tenant = self._owners.get((channel, account))
        if tenant is None:
            raise NotFound(f"no {channel.value} account {account!r} is configured here")
        return tenant

    def check(self, tenant: str, channel: Channel, account: str) -> None:
        """Refuse (before accepting) a send through an account that is not ``tenant``'s."""
        if self._owners.get((channel, account)) != tenant:
            raise InvalidRequest(
                f"{channel.value} account {account!r} is not one of this tenant's accounts; "
                "use one configured for it (an admin adds accounts in the hub's settings)",
                field="account",
            )
