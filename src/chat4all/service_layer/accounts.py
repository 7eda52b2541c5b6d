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

    def known(self, channel: str) -> str:
        """``channel`` when this hub carries it; else :class:`InvalidRequest` on ``channel``."""
        if channel not in self._channels:
            raise InvalidRequest(
                f"unknown channel {channel!r}; this hub carries {', '.join(self._channels)} "
                "(GET /v1/channels lists those your key may use)",
                field="channel",
            )
        return channel

    def check(self, tenant: str, channel: str, account: str) -> None:
        """Refuse (before accepting) a send on an unknown channel (field ``channel``) or through
        an account that is not ``tenant``'s (field ``account``)."""
        self.known(channel)
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
        """The channels ``tenant`` has accounts on, each with those accounts (sorted)."""
        mine: dict[str, list[str]] = {}
        for (channel, account), owner in sorted(self._owners.items()):
            if owner == tenant:
                mine.setdefault(channel, []).append(account)
        return {channel: tuple(accounts) for channel, accounts in mine.items()}
