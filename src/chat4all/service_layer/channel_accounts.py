"""Use cases on the channel accounts themselves (not their messages): which are paused, and
resuming one. An account pauses when its provider refuses its credentials (an expired or
revoked token); its messages wait, unspent, until an admin resumes it
(optionally with a new token) or its token is replaced in the settings and reloaded. REST and
gRPC reach this only through :class:`ChannelAccounts`.

A pause is this process's: with several hub processes, resume (or reload) each of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from chat4all.domain.access import Principal
from chat4all.errors import InvalidRequest, NotFound
from chat4all.plugin import PausableConnector
from chat4all.service_layer.access import AuditTrail
from chat4all.service_layer.accounts import Accounts

__all__ = ["AccountState", "ChannelAccounts", "PausedChannels", "WaitingMessages"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AccountState:
    channel: str
    name: str
    paused: bool
    reason: str | None = None
    """Why it is paused (the provider's error; never a token)."""
    released: int = 0
    """Waiting messages made due at once (after a resume)."""


class PausedChannels(Protocol):
    def pausable(self, channel: str) -> PausableConnector | None: ...


class WaitingMessages(Protocol):
    async def due_now(self, channel: str, account: str, now: float) -> int:
        """Every waiting message of ``account`` due at ``now``; how many."""
        ...


class ChannelAccounts:
    def __init__(
        self,
        accounts: Accounts,
        channels: PausedChannels,
        store: WaitingMessages,
        audit: AuditTrail,
        wake: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._accounts = accounts
        self._channels = channels
        self._store = store
        self._audit = audit
        self._wake = wake
        self._clock = clock

    def states(self, tenant: str, channel: str) -> list[AccountState]:
        """``tenant``'s accounts on ``channel``, each paused (why) or not."""
        self._accounts.known(channel)
        connector = self._channels.pausable(channel)
        paused: Mapping[str, str] = connector.paused() if connector is not None else {}
        return [
            AccountState(channel, name, name in paused, paused.get(name))
            for name in self._accounts.of(tenant).get(channel, ())
        ]

    async def resume(
        self, who: Principal, channel: str, account: str, token: str | None = None
    ) -> AccountState:
        """Resume ``who``'s tenant's ``account`` (with its new ``token`` when given: it stays in
        use until the next restart, so replace it in the settings too); its waiting messages go
        at once. Audited (never the token). Resuming an account that is not paused is not an
        error (a new token is still swapped in)."""
        self._accounts.known(channel)
        try:
            owner = self._accounts.owner(channel, account)
        except NotFound:
            owner = None
        if owner != who.tenant:
            raise NotFound(f"no {channel} account {account!r} of this tenant is configured here")
        connector = self._channels.pausable(channel)
        if connector is None:
            raise InvalidRequest(
                f"{channel} accounts do not pause (its connector sends or fails each message); "
                "nothing to resume",
                field="channel",
            )
        why = connector.paused().get(account)
        was = connector.resume(account, token)
        released = await self.released(channel, account)
        await self._audit.append(
            "account_resumed",
            who.tenant,
            who.key_id,
            f"{channel} account {account!r} "
            + (f"was paused ({why})" if was else "was not paused")
            + ("; a new access token given" if token is not None else "")
            + f"; {released} waiting message(s) released",
        )
        return AccountState(channel, account, False, None, released)

    async def released(self, channel: str, account: str) -> int:
        """``account``'s waiting messages due at once (it resumed), the dispatcher woken."""
        released = await self._store.due_now(channel, account, self._clock())
        if self._wake is not None:
            self._wake()
        if released:
            log.info("%s account %r: %d waiting message(s) go out now", channel, account, released)
        return released
