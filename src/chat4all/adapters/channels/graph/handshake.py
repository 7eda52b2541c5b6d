"""The subscription handshake: Meta calls the webhook with ``GET ?hub.mode=subscribe&
hub.verify_token=<ours>&hub.challenge=<n>`` and expects the challenge back, verbatim."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from chat4all.ports import WebhookReply

__all__ = ["handshake"]


def handshake(query: Mapping[str, str], verify_token: str) -> WebhookReply:
    """200 with ``hub.challenge`` (plain text) when ``hub.mode`` is ``subscribe`` and
    ``hub.verify_token`` is ``verify_token`` (compared in constant time); else 403."""
    token = query.get("hub.verify_token", "")
    challenge = query.get("hub.challenge", "")
    if (
        query.get("hub.mode") == "subscribe"
        and verify_token
        and challenge
        and hmac.compare_digest(token.encode(), verify_token.encode())
    ):
        return WebhookReply(200, challenge.encode(), "text/plain")
    return WebhookReply(
        403,
        b'{"error":"verification refused: hub.mode must be subscribe and hub.verify_token '
        b"this account's verify token, with a hub.challenge\"}",
    )
