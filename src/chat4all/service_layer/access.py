"""Who may do what, how often: authentication, roles, rate limits, and the audit of failures.

REST and gRPC both call :meth:`Access.authorize`, so the rules cannot differ between them.

Rate limits are a port, :class:`RateLimiter`, with three limits a request must all pass: its
key's (``CHAT4ALL_RATE_PER_KEY``), its tenant's (``CHAT4ALL_RATE_PER_TENANT``) and the hub's
(``CHAT4ALL_RATE_GLOBAL``), each in requests a minute with bursts up to a minute's worth; a
request one of them refuses counts against none. The in-process adapter,
:class:`LocalRateLimiter`, keeps token buckets; with several processes (``CHAT4ALL_REDIS_URL``)
:class:`~chat4all.adapters.redis_state.RedisRateLimiter` keeps the same limits in Redis, shared
by every process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from chat4all.domain.access import Principal
from chat4all.errors import AuthError, PermissionDenied, RateLimited

__all__ = [
    "Access",
    "TokenBucket",
    "AuditTrail",
    "Keys",
    "RateLimiter",
    "LocalRateLimiter",
    "over_limit",
]


class Keys(Protocol):
    """Where API keys are kept (``KeyRing`` over the database)."""

    async def authenticate(self, presented: str | None) -> Principal:
        """The key's principal; :class:`AuthError` for a missing, malformed, unknown or revoked
        key."""
        ...


class AuditTrail(Protocol):
    async def append(
        self, event: str, tenant: str | None, actor: str | None, detail: str
    ) -> None: ...


@dataclass
class TokenBucket:
    rate: float
    """Tokens per second."""
    capacity: float
    tokens: float
    updated: float

    def wait(self, now: float) -> float:
        """The seconds until a token is available at ``now`` (0: one is), taking none."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> float:
        """Take one token; 0 when granted, else the seconds until one is available."""
        wait = self.wait(now)
        if wait == 0:
            self.tokens -= 1
        return wait


class RateLimiter(Protocol):
    async def check(self, key_id: str, tenant: str) -> None:
        """Count one request of the key ``key_id`` of ``tenant``; :class:`RateLimited` (with the
        seconds to wait) when the key is over its rate, the tenant over its own, or the hub over
        its global one. A denied request counts against none of them."""
        ...


class LocalRateLimiter:
    """Token buckets in this process: each key ``per_key`` requests a minute, each tenant
    ``per_tenant``, all together ``global_`` (bursts up to a minute's worth; ``0`` turns a
    limit off)."""

    def __init__(
        self,
        per_key: int = 100,
        global_: int = 0,
        clock: Callable[[], float] = time.monotonic,
        per_tenant: int = 0,
    ) -> None:
        self._per_key = per_key
        self._per_tenant = per_tenant
        self._global = TokenBucket(global_ / 60, global_, global_, clock()) if global_ > 0 else None
        self._keys: dict[str, TokenBucket] = {}
        self._tenants: dict[str, TokenBucket] = {}
        self._clock = clock

    async def check(self, key_id: str, tenant: str) -> None:
        now = self._clock()
        limits: list[tuple[TokenBucket, str, int]] = []
        if self._per_key > 0:
            limits.append((_bucket(self._keys, key_id, self._per_key, now), "key", self._per_key))
        if self._per_tenant > 0:
            bucket = _bucket(self._tenants, tenant, self._per_tenant, now)
            limits.append((bucket, "tenant", self._per_tenant))
        if self._global is not None:
            limits.append((self._global, "global", int(self._global.capacity)))
        waits = [(bucket.wait(now), limit, per_minute) for bucket, limit, per_minute in limits]
        wait, limit, per_minute = max(waits, default=(0.0, "", 0))
        if wait > 0:
            raise over_limit(limit, per_minute, wait)
        for bucket, _, _ in limits:
            bucket.take(now)


def over_limit(limit: str, per_minute: int, wait: float) -> RateLimited:
    """The refusal of a request over ``limit`` (``key``, ``tenant`` or ``global``) of
    ``per_minute``, to retry in ``wait`` seconds; the same from every adapter."""
    if limit == "global":
        why = f"the hub is over its global rate of {per_minute} requests a minute"
    else:
        why = f"over {per_minute} requests a minute for this {limit}"
    return RateLimited(f"{why}; retry in {wait:.1f}s", wait)


def _bucket(buckets: dict[str, TokenBucket], name: str, per_minute: int, now: float) -> TokenBucket:
    bucket = buckets.get(name)
    if bucket is None:
        bucket = buckets[name] = TokenBucket(per_minute / 60, per_minute, per_minute, now)
    return bucket


class Access:
    def __init__(
        self,
        keys: Keys,
        audit: AuditTrail | None = None,
        *,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._keys = keys
        self._audit = audit
        self._limiter = limiter

    async def authorize(self, presented: str | None, action: str) -> Principal:
        try:
            who = await self._keys.authenticate(presented)
        except AuthError as exc:
            await self._record("auth_failed", None, None, str(exc))
            raise
        if not who.can(action):
            await self._record(
                "permission_denied", who.tenant, who.key_id, f"{who.role.value} tried {action}"
            )
            raise PermissionDenied(f"a {who.role.value} key may not {action}")
        if self._limiter is not None:
            await self._limiter.check(who.key_id, who.tenant)
        return who

    async def _record(self, event: str, tenant: str | None, actor: str | None, detail: str) -> None:
        if self._audit is not None:
            await self._audit.append(event, tenant, actor, detail)
