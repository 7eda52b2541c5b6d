"""The Telegram session as the service sees it: a verdict per check, and the ports around it.

A check ends in one of three verdicts:

- ``valid``: Telegram answered ``get_me`` for this session;
- ``dead``: Telegram (or pyrogram's own parser, for a malformed string) refused the session for
  good: expired, revoked, unregistered, invalid, duplicated, the account deactivated or banned.
  Only a new ``SESSION_STRING`` helps;
- ``unreachable``: no answer (timeout, network down). Not the session's fault: retried, never
  reported as expired.

The pyrogram side lives in :mod:`tgstream.adapters.telegram_session`; this module imports no
Telegram library, so the supervisor and its tests stay free of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Protocol

from tgstream.config import Settings

__all__ = [
    "RECOVERY_COMMAND",
    "SESSION_HINT",
    "SessionState",
    "SESSION_STATES",
    "Verdict",
    "SessionVerifier",
    "SessionEvents",
    "NullSessionEvents",
    "Alerter",
]

RECOVERY_COMMAND: Final = "python test/auto_session_runner.py --write-env"
"""The seed's runbook command (same as ``tgstream session new --write-env .env``)."""
SESSION_HINT: Final = f"create a new one with `{RECOVERY_COMMAND}`"

SessionState = Literal["none", "checking", "valid", "dead", "unreachable"]
SESSION_STATES: Final[tuple[SessionState, ...]] = (
    "none",
    "checking",
    "valid",
    "dead",
    "unreachable",
)
"""Every value of :data:`SessionState`, a bounded set (the metrics issue exports it)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one session check.

    ``cause`` is a short, bounded label (``SESSION_EXPIRED``, ``malformed``, ``timeout`` ...);
    ``detail`` is the operator's sentence, already free of secrets.
    """

    kind: Literal["valid", "dead", "unreachable"]
    cause: str
    detail: str

    @property
    def valid(self) -> bool:
        return self.kind == "valid"

    @property
    def dead(self) -> bool:
        return self.kind == "dead"


class SessionVerifier(Protocol):
    """Checks ``settings``' session against Telegram (connect, then ``get_me``).

    Never raises for an expected failure: every outcome is a :class:`Verdict`.
    """

    async def verify(self, settings: Settings) -> Verdict: ...


class Alerter(Protocol):
    """Tells the operator out of band (the user session may be the thing that is dead)."""

    async def notify(self, kind: str, text: str) -> None:
        """Send ``text``; ``kind`` (a bounded label) is what rate limiting counts by. Never
        raises: a failed alert is logged, the service goes on."""
        ...


class SessionEvents(Protocol):
    """What the supervisor reports; the metrics issue plugs Prometheus in here."""

    def session_state(self, state: SessionState) -> None: ...

    def degraded(self, active: bool, reason: str) -> None: ...

    def reauth_attempt(self, result: Literal["valid", "dead", "unreachable"]) -> None: ...


class NullSessionEvents:
    def session_state(self, state: SessionState) -> None:
        pass

    def degraded(self, active: bool, reason: str) -> None:
        pass

    def reauth_attempt(self, result: Literal["valid", "dead", "unreachable"]) -> None:
        pass
