"""The fast path of an idempotent replay: completed Idempotency-Keys' first answers in a cache
in front of the store.

The store stays the truth: it reserves a key, completes it with the first answer in the accept
transaction, and replays that answer (see :mod:`chat4all.adapters.storage.messages`). A cache
(:class:`IdempotencyCache`) only remembers completed keys, written after their commit, so that
a retry of a completed send is answered without a database round trip. A key it does not know
(never cached, expired, evicted, or the cache away) goes to the store, which answers as it
always did; a key it knows with another body is refused exactly as the store refuses it.

:class:`CachedReplays` puts a cache in front of a :class:`~chat4all.ports.MessageStore`: a
decorator of the store rather than a step of the use case, so that the cache answers exactly
where the store would, after every validation of the request, and the use case knows nothing
of it. The embedded default has no cache (:class:`NoIdempotencyCache`); with
``CHAT4ALL_REDIS_URL`` the cache is :class:`~chat4all.adapters.redis_state.RedisIdempotencyCache`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from chat4all.domain.model import Conversation, Message
from chat4all.errors import IdempotencyConflict
from chat4all.ports import NO_ORIGIN, Accepted, MessageStore, Origin, Page, SendRequest

__all__ = ["Completed", "IdempotencyCache", "NoIdempotencyCache", "CachedReplays"]


@dataclass(frozen=True, slots=True)
class Completed:
    """A completed Idempotency-Key: the hash of the body it was first sent with, and the first
    answer (the message as it was accepted then)."""

    body_hash: str
    message: Message


class IdempotencyCache(Protocol):
    """Completed keys by tenant and key. Neither method raises when the cache cannot answer:
    :meth:`get` then knows nothing, :meth:`put` does nothing (the store answers instead)."""

    async def get(self, tenant: str, key: str) -> Completed | None:
        """The completed key ``key`` of ``tenant``; ``None`` when not known here."""
        ...

    async def put(self, tenant: str, key: str, completed: Completed, ttl: float) -> None:
        """Remember ``completed`` for ``ttl`` seconds (nothing when ``ttl`` is not positive)."""
        ...


class NoIdempotencyCache:
    """No cache: every replay is answered by the store (the embedded default, where the store
    is in-process anyway)."""

    async def get(self, tenant: str, key: str) -> Completed | None:
        return None

    async def put(self, tenant: str, key: str, completed: Completed, ttl: float) -> None:
        return None


class CachedReplays:
    """``store`` with ``cache`` in front of its idempotent replays. A completed key is
    remembered until ``keep`` seconds after its first answer was accepted (when the store's
    hourly housekeeping may forget it too: ``CHAT4ALL_IDEMPOTENCY_HOURS``), never longer."""

    def __init__(self, store: MessageStore, cache: IdempotencyCache, keep: float) -> None:
        self._store = store
        self._cache = cache
        self._keep = keep

    async def accept(
        self,
        tenant: str,
        request: SendRequest,
        idempotency: tuple[str, str] | None,
        now: float,
        origin: Origin = NO_ORIGIN,
    ) -> Accepted:
        if idempotency is None:
            return await self._store.accept(tenant, request, None, now, origin)
        key, body_hash = idempotency
        known = await self._cache.get(tenant, key)
        if known is not None:
            if known.body_hash != body_hash:
                raise IdempotencyConflict()
            return Accepted(known.message, replayed=True)
        accepted = await self._store.accept(tenant, request, idempotency, now, origin)
        ttl = accepted.message.created_at + self._keep - now
        await self._cache.put(tenant, key, Completed(body_hash, accepted.message), ttl)
        return accepted

    async def get(self, tenant: str, message_id: str) -> Message:
        return await self._store.get(tenant, message_id)

    async def conversations(
        self, tenant: str, cursor: str | None, limit: int
    ) -> Page[Conversation]:
        return await self._store.conversations(tenant, cursor, limit)

    async def messages(
        self, tenant: str, conversation_id: str, cursor: str | None, limit: int
    ) -> Page[Message]:
        return await self._store.messages(tenant, conversation_id, cursor, limit)
