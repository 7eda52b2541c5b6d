"""Which channels exist here and which tenant owns each of our channel accounts (a bot, a phone
number, a page).

A tenant sends only through its own accounts, and what reaches an account is stored for its
owner: one tenant's key can never make another tenant's bot speak or read its mail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from chat4all.errors import InvalidRequest, NotFound

__all__ = ["Accounts"]


class Accounts:
    def __init__(
        self, owners: Mapping[tuple[str, str], str], channels: Iterable[str] | None = None
    ) -> None:
        """``owners``: ``(channel, account)`` -> tenant; ``channels``: every channel name here
        (default: those ``owners`` names)."""
        self._owners = dict(owners)
        names = {channel for channel, _ in self._owners}
        self._channels = tuple(sorted(names | set(channels or ())))

    def owner(self, channel: str, account: str) -> str:
        """The tenant of ``account``; :class:`NotFound` for an account not configured here."""
        tenant = self._owners.get((channel, account))
        if tenant is None:
            raise NotFound(f"no {channel} account {account!r} is configured here")
        return tenant

    def check(self, tenant: str, channel: str, account: str) -> None:
        """Refuse (before accepting) a send through an unknown channel, or an account that is
        not ``tenant``'s."""
        if channel not in self._channels:
            raise InvalidRequest(
                f"no channel {channel!r} here; channels: {', '.join(self._channels)}",
                field="channel",
            )
        if self._owners.get((channel, account)) != tenant:
            raise InvalidRequest(
                f"{channel} account {account!r} is not one of this tenant's accounts; "
                "use one configured for it (an admin adds accounts in the hub's settings)",
                field="account",
            )

    def channels(self) -> tuple[str, ...]:
        """Every channel's name, sorted."""
        return self._channels

    def of(self, tenant: str) -> dict[str, tuple[str, ...]]:
        """``tenant``'s accounts by channel (every channel, sorted; an empty tuple where it has
        none)."""
        mine: dict[str, list[str]] = {channel: [] for channel in self._channels}
        for (channel, account), owner in self._owners.items():
            if owner == tenant:
                mine[channel].append(account)
        return {channel: tuple(sorted(accounts)) for channel, accounts in mine.items()}
