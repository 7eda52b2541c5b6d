"""Send API errors (the Graph error envelope, :mod:`~chat4all.adapters.channels.graph.errors`)
by ``code`` and ``error_subcode``: Messenger's and Instagram's own rules over the codes every
Graph product shares.

- 10/2018278: outside the 24 h window, permanent, with what to do (``MESSAGE_TAG`` +
  ``HUMAN_AGENT``, up to 7 days); 10/2534022: outside even that;
- 551 (this person isn't available), 100/2018001 (no such user), 100/2018109 (attachment too
  large): permanent with their reasons;
- 613, 4, 17, 32 (rates): paced; 2, 1200 (temporary): retried;
- 190 (the token): the account pauses (:class:`~chat4all.errors.AccountPaused`).
"""

from __future__ import annotations

from typing import Final

from chat4all.adapters.channels.graph import GRAPH_RULES, Action, Rule, Rules

__all__ = ["SEND_API_RULES", "OUTSIDE_WINDOW"]

OUTSIDE_WINDOW: Final = (10, 2018278)

SEND_API_RULES: Final[Rules] = {
    **GRAPH_RULES,
    OUTSIDE_WINDOW: Rule(
        Action.PERMANENT,
        "outside the messaging window (the person last wrote more than 24 h ago): answer with "
        "messaging_type MESSAGE_TAG and tag HUMAN_AGENT (up to 7 days after their last "
        "message) or wait until they write again",
    ),
    (10, 2534022): Rule(
        Action.PERMANENT,
        "outside the 7-day HUMAN_AGENT window: wait until the person writes again",
    ),
    551: Rule(
        Action.PERMANENT,
        "this person isn't available right now (they blocked the account, left, or cannot "
        "receive messages)",
    ),
    (100, 2018001): Rule(
        Action.PERMANENT, "no such person: the recipient id is not a user of this account"
    ),
    (100, 2018109): Rule(Action.PERMANENT, "the attachment is larger than the platform takes"),
    1200: Rule(Action.RETRY, "temporary send failure on Meta's side"),
}
