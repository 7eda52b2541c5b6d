"""Who may do what, how often: authentication, roles, rate limits, and the audit of failures.

REST and gRPC both call :meth:`Access.authorize`, so the rules cannot differ between them.

Rate limits are a port, :class:`RateLimiter`. Its in-process adapter, :class:`LocalRateLimiter`,
keeps token buckets: each key gets ``per_key`` requests a minute (bursts up to that many), and
all keys together ``global_`` a minute when set. With several processes (scale-out) the buckets
move to Redis behind the same port.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from chat4all.domain.access import Principal
from chat4all.errors import AuthError, PermissionDenied, RateLimited

__all__ = ["Access", "TokenBucket", "AuditTrail", "Keys", "RateLimiter", "LocalRateLimiter"]


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

    def take(self, now: float) -> float:
        """Take one token; 0 when granted, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter(Protocol):
    async def check(self, key_id: str) -> None:
        """Count one request of the key ``key_id``; :class:`RateLimited` (with the seconds to
        wait) when it is over its rate or the hub over its global one."""
        ...


class LocalRateLimiter:
    """Token buckets in this process (``0`` turns a limit off)."""

    def __init__(
        self, per_key: int = 100, global_: int = 0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._per_key = per_key
        self._global = TokenBucket(global_ / 60, global_, global_, clock()) if global_ > 0 else None
        self._buckets: dict[str, TokenBucket] = {}
        self._clock = clock

    async def check(self, key_id: str) -> None:
        now = self._clock()
        if self._per_key > 0:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = TokenBucket(self._per_key / 60, self._per_key, self._per_key, now)
                self._buckets[key_id] = bucket
            wait = bucket.take(now)
            if wait:
                raise RateLimited(
                    f"over {self._per_key} requests a minute for this key; retry in {wait:.1f}s",
                    wait,
                )
        if self._global is not None:
            wait = self._global.take(now)
            if wait:
                raise RateLimited(f"the hub is over its global rate; retry in {wait:.1f}s", wait)


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
            await self._limiter.check(who.key_id)
        return who

    async def _record(self, event: str, tenant: str | None, actor: str | None, detail: str) -> None:
        if self._audit is not None:
            await self._audit.append(event, tenant, actor, detail)
