"""Live events across processes over Redis pub/sub (``CHAT4ALL_REDIS_URL``).

:class:`RedisEventBus` is the :class:`~chat4all.service_layer.events.LiveEvents` of a hub with
several API processes. Every process publishes its stored events on one Redis channel and holds
ONE subscription to it, fanned out locally (an :class:`EventBus`) to its streams: 10,000
streams cost one Redis connection, not 10,000. A message is ``tenant`` NUL ``json``, so an
event of a tenant nobody here listens to is dropped without being decoded.

Redis pub/sub keeps nothing: what is published while a subscriber is disconnected is lost to
it. So the bus reconnects by itself (it pings a quiet Redis: silence counts as a loss too), and
each time its subscription is (re)confirmed it tells its streams (a ``gap`` event): they replay
from the store after the last id they sent (:func:`~chat4all.service_layer.events.follow`).
Publishing waits in a bounded queue while Redis is away and goes out once it is back (at most
:data:`OUTGOING` events; past that the oldest are dropped, with a warning: they stay in the
store, for a stream that resumes from an earlier id).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from typing import Any, Final

import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from chat4all.service_layer.events import Event, EventBus, Subscription

__all__ = ["RedisEventBus"]

log = logging.getLogger(__name__)

OUTGOING: Final = 10_000
"""Events waiting to be published while Redis is away, at most."""


class RedisEventBus:
    def __init__(
        self,
        url: str,
        *,
        channel: str = "chat4all:events",
        name: str | None = None,
        connect_timeout: float = 5.0,
        retry: float = 0.5,
        ping: float = 5.0,
        local: EventBus | None = None,
    ) -> None:
        """``channel``: the Redis channel (one per hub; tests give each their own); ``name``:
        its connections' name (``CLIENT LIST``); ``connect_timeout``: seconds to connect;
        ``retry``: seconds between attempts to reach Redis again; ``ping``: after that many
        quiet seconds the subscription pings Redis, and one that has heard nothing (not even
        the answer) for three times as long is taken as lost (a frozen server, a dead link)."""
        self._url = url
        self._name = name
        self._connect_timeout = connect_timeout
        self._channel = channel
        self._retry = retry
        self._ping = ping
        self._local = local if local is not None else EventBus()
        self._client: redis.Redis | None = None
        self._outgoing: collections.deque[bytes] = collections.deque(maxlen=OUTGOING)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.subscribed = asyncio.Event()
        """Set while the subscription is confirmed (tests wait for it)."""
        self.gaps = 0
        """How many times the subscription was (re)confirmed."""

    # ---- the port ------------------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        if self._closed:  # a commit during shutdown: its event is in the store
            log.debug("live event %d not published: the bus is closed", event.id)
            return
        self._start()
        payload = json.dumps(
            {"id": event.id, "type": event.type, "data": event.data, "at": event.at},
            separators=(",", ":"),
        )
        if len(self._outgoing) == self._outgoing.maxlen:
            log.warning("Redis unreachable for long: live event %d not published", event.id)
        self._outgoing.append(event.tenant.encode() + b"\0" + payload.encode())
        self._wake.set()

    def subscribe(self, tenant: str) -> Subscription:
        self._start()
        return self._local.subscribe(tenant)

    def subscribers(self, tenant: str) -> int:
        return self._local.subscribers(tenant)

    # ---- the connection ------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop listening and publishing (what still waits to be published is dropped: it is
        stored, and a stream that resumes from an earlier id replays it)."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _start(self) -> None:
        if self._tasks or self._closed:
            return
        # a client of its own, not the rate limiter's: the subscription waits on its socket for
        # as long as nothing is published (no read timeout; the pings find a silent Redis)
        self._client = redis.Redis.from_url(
            self._url, client_name=self._name, socket_connect_timeout=self._connect_timeout
        )
        self._tasks = [
            asyncio.create_task(self._listen(), name="redis-events-listen"),
            asyncio.create_task(self._send(), name="redis-events-send"),
        ]

    async def _listen(self) -> None:
        assert self._client is not None
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                await self._read(pubsub)
            except (RedisError, OSError, TimeoutError) as exc:
                if self.subscribed.is_set():
                    log.warning("live events: Redis subscription lost (%s); reconnecting", exc)
                self.subscribed.clear()
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(self._retry)

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        while True:
            message = await pubsub.get_message(timeout=self._ping)
            if message is not None:
                heard = loop.time()
                self._received(message)
            elif loop.time() - heard > 3 * self._ping:
                raise TimeoutError(f"nothing heard from Redis for {loop.time() - heard:.0f} s")
            else:
                await asyncio.wait_for(pubsub.ping(), self._ping)  # its answer is a message

    def _received(self, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe":
            # (re)subscribed, perhaps silently by the client: what came meanwhile is lost here
            self.gaps += 1
            self.subscribed.set()
            self._local.gap()
            return
        if message["type"] != "message":
            return
        tenant, _, payload = bytes(message["data"]).partition(b"\0")
        name = tenant.decode()
        if not self._local.subscribers(name):
            return
        body = json.loads(payload)
        self._local.publish(Event(body["id"], name, body["type"], body["data"], body["at"]))

    async def _send(self) -> None:
        assert self._client is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outgoing:
                payload = self._outgoing.popleft()
                try:  # a silent Redis holds no publication longer than a ping's wait
                    await asyncio.wait_for(self._client.publish(self._channel, payload), self._ping)
                except (RedisError, OSError, TimeoutError) as exc:
                    self._outgoing.appendleft(payload)
                    log.warning("live events: cannot publish to Redis (%s); trying again", exc)
                    await asyncio.sleep(self._retry)
