"""Operator alerts through the Telegram Bot API (``sendMessage``), rate-limited per kind.

A dead user session cannot warn anyone, so alerts go through a bot: ``ALERT_BOT_TOKEN`` (from
@BotFather) and ``ALERT_CHAT_ID`` (a chat the bot may write to). ``ALERT_API_URL`` points
elsewhere in tests (a loopback fake of the Bot API).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

import httpx

__all__ = ["BotAlerter"]

log = logging.getLogger(__name__)

_TIMEOUT: Final = 10.0


class BotAlerter:
    """:class:`~tgstream.session.Alerter` over the Bot API. A repeat of the kind last sent
    within ``min_interval`` seconds is logged and dropped; a change of kind always goes out.
    Alerts go out one at a time, in the order they were raised: each is judged against the one
    sent before it (two in flight at once could arrive swapped, or a change be taken for a
    repeat of the alert before the one still in flight)."""

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
        self._last_kind: str | None = None
        self._one_at_a_time = asyncio.Lock()

    async def notify(self, kind: str, text: str) -> None:
        async with self._one_at_a_time:
            await self._notify(kind, text)

    async def _notify(self, kind: str, text: str) -> None:
        now = self._clock()
        last = self._last.get(kind)
        # Only a repeat of the state last announced is held back: a change always goes out,
        # so the operator's latest message always tells the current state.
        if kind == self._last_kind and last is not None and now - last < self._min_interval:
            log.info(
                "alert %r not sent: the same was sent %.0fs ago (rate limit)", kind, now - last
            )
            return
        try:
            async with httpx.AsyncClient(timeout=_TIMEOUT, transport=self._transport) as client:
                answer = await client.post(self._url, json={"chat_id": self._chat_id, "text": text})
            body = answer.json()
            ok = answer.status_code == 200 and isinstance(body, dict) and body.get("ok") is True
        except Exception as exc:  # an alert must never take the service down
            log.warning("alert %r not delivered: %s: %s", kind, type(exc).__name__, exc)
            return
        if not ok:
            description = body.get("description") if isinstance(body, dict) else None
            log.warning(
                "alert %r refused by the Bot API (HTTP %d: %s); check ALERT_BOT_TOKEN and that "
                "the bot may write to ALERT_CHAT_ID",
                kind,
                answer.status_code,
                description or "no description",
            )
            return
        self._last[kind] = now
        self._last_kind = kind
        log.info("alert %r sent to ALERT_CHAT_ID=%s", kind, self._chat_id)
