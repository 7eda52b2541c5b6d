"""getUpdates long polling: Telegram's alternative to its webhook
(``CHAT4ALL_TELEGRAM_POLLING``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from chat4all.adapters.channels.telegram.connector import DEFAULT_API
from chat4all.adapters.channels.telegram.updates import received
from chat4all.errors import InvalidRequest
from chat4all.plugin import Deliver
from opskit.lifecycle import sleep_or_stop

__all__ = ["TelegramPoller"]

log = logging.getLogger(__name__)


class TelegramPoller:
    """Long-polls one bot and hands each update to ``deliver`` (the core deduplicates by
    update_id, so a redelivery after a crash is harmless).

    The offset moves past an update only after ``deliver`` returned, so nothing is confirmed to
    Telegram before it is stored.
    """

    def __init__(
        self,
        account: str,
        token: str,
        deliver: Deliver,
        *,
        api_url: str = DEFAULT_API,
        poll_timeout: int = 25,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._account = account
        self._token = token
        self._deliver = deliver
        self._poll_timeout = poll_timeout
        self.name = f"telegram-poll-{account}"
        self._client = httpx.AsyncClient(
            base_url=api_url.rstrip("/"), timeout=poll_timeout + 10, transport=transport
        )

    async def run(self, stop: asyncio.Event) -> None:
        offset: int | None = None
        backoff = 1.0
        try:
            while not stop.is_set():
                body: dict[str, Any] = {
                    "timeout": self._poll_timeout,
                    # reactions come only when asked for (Bot API: not in the default set)
                    "allowed_updates": ["message", "callback_query", "message_reaction"],
                }
                if offset is not None:
                    body["offset"] = offset
                try:
                    answer = await self._client.post(f"/bot{self._token}/getUpdates", json=body)
                    doc = answer.json()
                except (httpx.HTTPError, ValueError) as exc:
                    log.warning(
                        "telegram %s: getUpdates failed (%s); retrying in %gs",
                        self._account,
                        exc,
                        backoff,
                    )
                    await sleep_or_stop(stop, backoff)
                    backoff = min(backoff * 2, 60.0)
                    continue
                if not doc.get("ok"):
                    log.error(
                        "telegram %s: getUpdates refused (HTTP %d: %s); a webhook may be set "
                        "(deleteWebhook) or the token is wrong; retrying in %gs",
                        self._account,
                        answer.status_code,
                        doc.get("description"),
                        backoff,
                    )
                    await sleep_or_stop(stop, backoff)
                    backoff = min(backoff * 2, 60.0)
                    continue
                backoff = 1.0
                for update in sorted(doc["result"], key=lambda u: u["update_id"]):
                    try:
                        await self._deliver(self._account, received(update))
                    except InvalidRequest as exc:  # Telegram would send it again: skip it
                        log.warning("telegram %s: update skipped: %s", self._account, exc)
                    offset = int(update["update_id"]) + 1
        finally:
            await self._client.aclose()
