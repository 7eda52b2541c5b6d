"""The Graph API's error envelope and what each error means for a delivery.

Every Graph call that fails answers (HTTP 4xx/5xx)::

    {"error": {"message": "...", "type": "OAuthException", "code": 190,
               "error_subcode": 463, "error_data": {"details": "..."}, "fbtrace_id": "..."}}

A channel reads it by ``code`` (and ``error_subcode`` where Meta gives one meaning per pair),
never by its message or title, through a table of :class:`Rule` s: :data:`GRAPH_RULES` (the
codes every Graph product shares) under the channel's own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from chat4all.errors import AccountPaused, DeliveryError, PermanentDelivery, RetryableDelivery

__all__ = [
    "Action",
    "Rule",
    "Rules",
    "Scope",
    "GraphError",
    "GRAPH_RULES",
    "classify",
    "delivery_error",
    "AccountPaused",
]


class Action(StrEnum):
    RETRY = "retry"
    """A passing failure on Meta's side: try again with backoff."""
    PACE = "pace"
    """Over a rate: try again later, and send slower (the connector's pacing)."""
    PERMANENT = "permanent"
    """Refused for good: the message fails with the rule's reason."""
    PAUSE = "pause"
    """The account's token is dead: the account pauses until an operator acts."""


class Scope(StrEnum):
    """What a :attr:`Action.PACE` rate is counted over."""

    APP = "app"
    ACCOUNT = "account"
    PAIR = "pair"
    """Our account and one recipient."""


@dataclass(frozen=True, slots=True)
class Rule:
    action: Action
    reason: str
    """What it means and, where there is one, what to do."""
    retry_after: float | None = None
    """Seconds before trying again (``None``: the dispatcher's backoff)."""
    scope: Scope = Scope.ACCOUNT
    """For :attr:`Action.PACE`: what the rate is counted over."""


Rules = Mapping[int | tuple[int, int], Rule]
"""By ``code``, or ``(code, error_subcode)`` where the pair has its own meaning."""


@dataclass(frozen=True, slots=True)
class GraphError:
    """A failed Graph call as Meta described it."""

    status: int
    """The HTTP status."""
    code: int | None
    message: str
    type: str | None = None
    subcode: int | None = None
    details: str | None = None
    """``error_data.details`` (WhatsApp puts the useful sentence there)."""
    fbtrace_id: str | None = None

    @classmethod
    def parse(cls, status: int, body: bytes) -> GraphError:
        """The error of a failed call's answer; a body that is not Graph's envelope (a proxy's
        page, an empty 502) keeps the status alone."""
        try:
            doc: Any = json.loads(body)
        except ValueError:
            doc = None
        error = doc.get("error") if isinstance(doc, dict) else None
        if not isinstance(error, dict):
            text = body[:200].decode("utf-8", "replace").strip()
            return cls(status, None, text or f"HTTP {status}")
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, dict) else None
        return cls(
            status,
            _int(error.get("code")),
            str(error.get("message") or error.get("error_user_msg") or f"HTTP {status}"),
            _str(error.get("type")),
            _int(error.get("error_subcode")),
            _str(details),
            _str(error.get("fbtrace_id")),
        )

    @classmethod
    def from_object(cls, error: Mapping[str, Any], status: int = 0) -> GraphError:
        """An error object as WhatsApp puts it in a ``failed`` status webhook (``code``,
        ``title``, ``message``, ``error_data.details``; no HTTP status: ``0``)."""
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, dict) else None
        return cls(
            status,
            _int(error.get("code")),
            str(error.get("message") or error.get("title") or "failed"),
            None,
            _int(error.get("error_subcode")),
            _str(details),
        )

    def describe(self) -> str:
        """One line for a reason or a log: code, subcode, message, details, trace id."""
        code = "" if self.code is None else f"code {self.code}"
        if self.subcode is not None:
            code += f"/{self.subcode}"
        text = self.message
        if self.details and self.details not in text:
            text += f" ({self.details})"
        trace = f" [fbtrace_id {self.fbtrace_id}]" if self.fbtrace_id else ""
        http = f"HTTP {self.status} " if self.status else ""
        return f"{http}{code}: {text}{trace}".replace("  ", " ").lstrip(": ")


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


GRAPH_RULES: Final[Rules] = {
    1: Rule(Action.RETRY, "unknown Graph API error (Meta asks to retry)"),
    2: Rule(Action.RETRY, "Graph API service temporarily unavailable"),
    4: Rule(Action.PACE, "the app's Graph API call rate is exceeded", scope=Scope.APP),
    17: Rule(Action.PACE, "the user's Graph API call rate is exceeded"),
    32: Rule(Action.PACE, "the page's Graph API call rate is exceeded"),
    613: Rule(Action.PACE, "the Graph API call rate is exceeded"),
    190: Rule(
        Action.PAUSE,
        "the access token expired or was revoked: replace it in the settings, then resume the "
        "account",
    ),
    10: Rule(Action.PERMANENT, "the app lacks the permission for this call"),
    100: Rule(Action.PERMANENT, "invalid parameter"),
    200: Rule(Action.PERMANENT, "the app lacks the permission for this call"),
}


def classify(error: GraphError, rules: Rules = GRAPH_RULES) -> Rule:
    """``error``'s rule: by ``(code, subcode)``, then by ``code``; an error no rule names is
    retried when HTTP said 5xx, paced on 429, and permanent otherwise."""
    if error.code is not None:
        if error.subcode is not None and (error.code, error.subcode) in rules:
            return rules[(error.code, error.subcode)]
        if error.code in rules:
            return rules[error.code]
    if error.status >= 500:
        return Rule(Action.RETRY, "Meta's server failed")
    if error.status == 429:
        return Rule(Action.PACE, "too many requests")
    return Rule(Action.PERMANENT, "refused")


def delivery_error(
    where: str,
    error: GraphError,
    rule: Rule,
    *,
    account: str = "",
    done: tuple[str, ...] = (),
) -> DeliveryError:
    """The delivery error for ``error`` under ``rule``, its message
    ``<where>: <rule's reason>: <Meta's description>``."""
    text = f"{where}: {rule.reason}: {error.describe()}"
    if rule.action is Action.PAUSE:
        return AccountPaused(text, account, rule.retry_after, done)
    if rule.action is Action.PERMANENT:
        return PermanentDelivery(text, done)
    return RetryableDelivery(text, rule.retry_after, done)
