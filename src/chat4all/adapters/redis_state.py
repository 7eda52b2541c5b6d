"""State every API process shares through Redis (``CHAT4ALL_REDIS_URL``): the rate limits
(:class:`RedisRateLimiter`) and the idempotency replays' cache (:class:`RedisIdempotencyCache`).

Every key is under ``CHAT4ALL_REDIS_PREFIX`` (``chat4all:`` by default), so one Redis can serve
several hubs:

- ``<prefix>rate:key:<key id>``, ``<prefix>rate:tenant:<tenant>``, ``<prefix>rate:global``:
  each limit's theoretical arrival time (GCRA), a number of seconds, expiring once the limit is
  full again;
- ``<prefix>idem:<length of tenant>:<tenant>:<key>``: a completed Idempotency-Key's body hash
  and first answer (JSON), expiring when the store may forget the key.

Redis being away takes no request down (see :class:`Outage`): the rate limits are then kept by
a :class:`~chat4all.service_layer.access.LocalRateLimiter` in each process (so each process
grants the full limits until Redis is back), and every replay is answered by the store. The
client has short timeouts, a bounded pool, and one immediate retry after a closed connection (a
pooled connection that a restarted Redis closed), none after a timeout.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Final

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from chat4all.adapters.storage.rows import dump_message, undump_message
from chat4all.service_layer.access import LocalRateLimiter, over_limit
from chat4all.service_layer.idempotency import Completed

__all__ = ["redis_client", "Outage", "RedisRateLimiter", "RedisIdempotencyCache", "GCRA"]

log = logging.getLogger(__name__)

POOL_SIZE: Final = 32
"""Connections per process at most; a request waits (up to the timeout) for a free one."""
PAUSE: Final = 1.0
"""Seconds after a failed call before a user of Redis asks it again (meanwhile: the fallback)."""

GCRA: Final = """
-- One request against up to three GCRA limits (per key, per tenant, global), all or nothing.
-- KEYS: the limits' keys. ARGV[1]: now in seconds ("": the server's clock, shared by every
-- process); ARGV[1 + i]: limit i in requests a minute (0: off). A limit lets a minute's worth
-- through at once, then one every 60/rate seconds.
-- Returns {0, "0"} when granted (every limit counted), else {i, wait}: the limit i with the
-- longest wait, in seconds, and nothing counted.
local now
if ARGV[1] == "" then
  local t = redis.call("TIME")
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
local arrivals = {}
local worst, denied = 0, 0
for i = 1, #KEYS do
  local rate = tonumber(ARGV[i + 1])
  if rate > 0 then
    local tat = tonumber(redis.call("GET", KEYS[i]) or "0")
    if tat < now then tat = now end
    local arrival = tat + 60 / rate
    local wait = arrival - now - 60
    if wait > 1e-9 and wait > worst then worst, denied = wait, i end
    arrivals[i] = arrival
  end
end
if denied > 0 then return {denied, string.format("%.6f", worst)} end
for i, arrival in pairs(arrivals) do
  redis.call("SET", KEYS[i], string.format("%.6f", arrival),
             "PX", math.max(1, math.ceil((arrival - now) * 1000)))
end
return {0, "0"}
"""

_LIMITS: Final = ("key", "tenant", "global")


def redis_client(url: str, timeout: float, name: str | None = None) -> redis.Redis:
    """A client of the Redis at ``url``: at most :data:`POOL_SIZE` connections, ``timeout``
    seconds to connect, to answer, or to wait for a free connection; its connections named
    ``name`` (Redis's ``CLIENT LIST``)."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        client_name=name,
        max_connections=POOL_SIZE,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # once more at once after a closed connection (a restarted Redis), never after a
        # timeout: a frozen Redis costs a request one timeout, not two
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return redis.Redis.from_pool(pool)  # closing the client closes its pool


class Outage:
    """Whether Redis answers, as one of its users (``what``) sees it. A failure is logged once
    when an outage starts (a warning: what goes on meanwhile) and once when Redis answers again;
    every request decided without Redis is counted (``counted``). After a failure Redis is not
    asked for ``pause`` seconds, so a dead or frozen server costs a request at most one timeout
    a pause, not one each."""

    def __init__(
        self,
        what: str,
        meanwhile: str,
        counted: Callable[[], None] = lambda: None,
        pause: float = PAUSE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._what = what
        self._meanwhile = meanwhile
        self._counted = counted
        self._pause = pause
        self._clock = clock
        self._since: float | None = None
        self._retry_at = 0.0

    def ask(self, count: bool = True) -> bool:
        """Whether to ask Redis now; when not, the request is counted (``count``) as decided
        without it."""
        if self._since is not None and self._clock() < self._retry_at:
            if count:
                self._counted()
            return False
        return True

    def failed(self, exc: BaseException) -> None:
        """A call failed with ``exc``: the request is decided without Redis."""
        now = self._clock()
        if self._since is None:
            self._since = now
            log.warning(
                "Redis does not answer for the %s (%s: %s); %s until it does",
                self._what,
                type(exc).__name__,
                exc,
                self._meanwhile,
            )
        self._retry_at = now + self._pause
        self._counted()

    def answered(self) -> None:
        """A call succeeded."""
        if self._since is not None:
            log.info(
                "Redis answers again for the %s, after %.1f s",
                self._what,
                self._clock() - self._since,
            )
            self._since = None


class RedisRateLimiter:
    """The :class:`~chat4all.service_layer.access.RateLimiter` of every process together: GCRA
    in one Lua script (:data:`GCRA`), the three limits checked and counted in one atomic round
    trip. ``0`` turns a limit off. ``clock``: the seconds given to the script as now (tests);
    ``None``: Redis's own clock, the one every process shares. While Redis does not answer,
    ``fallback`` decides (default: the same limits in this process), each request so decided
    counted by ``unavailable``, and Redis asked again ``pause`` seconds after a failure (see
    :class:`Outage`)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        per_key: int,
        per_tenant: int = 0,
        global_: int = 0,
        clock: Callable[[], float] | None = None,
        fallback: LocalRateLimiter | None = None,
        unavailable: Callable[[], None] = lambda: None,
        pause: float = PAUSE,
    ) -> None:
        self._script = client.register_script(GCRA)
        self._prefix = prefix
        self._rates = (per_key, per_tenant, global_)
        self._fallback = fallback or LocalRateLimiter(per_key, global_, per_tenant=per_tenant)
        self._outage = Outage(
            "rate limits",
            "each process keeps them on its own (each grants the full limits)",
            unavailable,
            pause,
        )
        self._clock = clock

    async def check(self, key_id: str, tenant: str) -> None:
        if not any(self._rates):
            return
        if self._outage.ask():
            keys = [
                f"{self._prefix}rate:key:{key_id}",
                f"{self._prefix}rate:tenant:{tenant}",
                f"{self._prefix}rate:global",
            ]
            now = "" if self._clock is None else repr(self._clock())
            try:
                denied, wait = await self._script(keys=keys, args=[now, *self._rates])
            except (RedisError, OSError) as exc:
                self._outage.failed(exc)
            else:
                self._outage.answered()
                if int(denied):
                    limit = int(denied) - 1
                    raise over_limit(_LIMITS[limit], self._rates[limit], float(wait))
                return
        await self._fallback.check(key_id, tenant)


class RedisIdempotencyCache:
    """The :class:`~chat4all.service_layer.idempotency.IdempotencyCache` of every process
    together. While Redis does not answer, every replay goes to the store, each lookup so
    missed counted by ``unavailable`` (see :class:`Outage`)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        unavailable: Callable[[], None] = lambda: None,
        pause: float = PAUSE,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._outage = Outage(
            "idempotency cache",
            "every retried send is answered by the database",
            unavailable,
            pause,
        )

    def _key(self, tenant: str, key: str) -> str:
        # the tenant's length first: no tenant and key can make another pair's name
        return f"{self._prefix}idem:{len(tenant)}:{tenant}:{key}"

    async def get(self, tenant: str, key: str) -> Completed | None:
        if not self._outage.ask():
            return None
        try:
            raw = await self._client.get(self._key(tenant, key))
        except (RedisError, OSError) as exc:
            self._outage.failed(exc)
            return None
        self._outage.answered()
        if raw is None:
            return None
        doc = json.loads(raw)
        return Completed(doc["body_hash"], undump_message(doc["message"]))

    async def put(self, tenant: str, key: str, completed: Completed, ttl: float) -> None:
        if ttl <= 0 or not self._outage.ask(count=False):
            return
        value = json.dumps(
            {"body_hash": completed.body_hash, "message": dump_message(completed.message)},
            separators=(",", ":"),
        )
        try:
            await self._client.set(self._key(tenant, key), value, px=math.ceil(ttl * 1000))
        except (RedisError, OSError) as exc:
            self._outage.failed(exc)
        else:
            self._outage.answered()
