"""Operator alerts through the Telegram Bot API (``sendMessage``), rate-limited per kind.

A dead user session cannot warn anyone, so alerts go through a bot: ``ALERT_BOT_TOKEN`` (from
@BotFather) and ``ALERT_CHAT_ID`` (a chat the bot may write to). ``ALERT_API_URL`` points
elsewhere in tests (a loopback fake of the Bot API).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

import httpx

__all__ = ["BotAlerter"]

log = logging.getLogger(__name__)

_TIMEOUT: Final = 10.0


class BotAlerter:
    """:class:`~tgstream.session.Alerter` over the Bot API; one message per ``kind`` per
    ``min_interval`` seconds at most (later ones of that kind are logged and dropped)."""

    def __init__(
        self,
        token: str,
        chat_id: int | str,
        *,
        api_url: str = "https://api.telegram.org",
        min_interval: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = f"{api_url.rstrip('/')}/bot{token}/sendMessage"
        self._chat_id = chat_id
        self._min_interval = min_interval
        self._transport = transport
        self._clock = clock
        self._last: dict[str, float] = {}

    async def notify(self, kind: str, text: str) -> None:
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._min_interval:
            log.info("alert %r not sent: one was sent %.0fs ago (rate limit)", kind, now - last)
            return
        self._last[kind] = now
        try:
            async with httpx.AsyncClient(timeout=_TIMEOUT, transport=self._transport) as client:
                answer = await client.post(self._url, json={"chat_id": self._chat_id, "text": text})
            body = (
                answer.json()
                if answer.headers.get("content-type", "").startswith("application/json")
                else {}
            )
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("alert %r not delivered: %s: %s", kind, type(exc).__name__, exc)
            return
        if answer.status_code != 200 or not body.get("ok"):
            log.warning(
                "alert %r refused by the Bot API (HTTP %d: %s); check ALERT_BOT_TOKEN and that "
                "the bot may write to ALERT_CHAT_ID",
                kind,
                answer.status_code,
                body.get("description", "no description"),
            )
            return
        log.info("alert %r sent to ALERT_CHAT_ID=%s", kind, self._chat_id)
