"""chat4all's exceptions; entrypoints map each to one HTTP status and one gRPC code.

::

    Chat4AllError                    every error a client or operator can see
    ├── InvalidRequest      422      bad input; ``field`` names where
    ├── IdempotencyConflict 422      the same Idempotency-Key with a different body
    ├── IdempotencyInFlight 409      the first request with that key is still running
    ├── NotFound            404      no such resource for this tenant
    ├── AuthError           401      no or unknown API key
    ├── PermissionDenied    403      the key's role may not do this
    ├── RateLimited         429      over the key's (or the global) rate; ``retry_after`` seconds
    └── DeliveryError                a connector failed to deliver (never reaches a client)
        ├── RetryableDelivery        try again (after ``retry_after`` when the provider says)
        └── PermanentDelivery        give up: the message fails with this reason
"""

from __future__ import annotations

__all__ = [
    "Chat4AllError",
    "InvalidRequest",
    "IdempotencyConflict",
    "IdempotencyInFlight",
    "NotFound",
    "AuthError",
    "PermissionDenied",
    "RateLimited",
    "DeliveryError",
    "RetryableDelivery",
    "PermanentDelivery",
]


class Chat4AllError(Exception):
    status = 500
    code = "internal"


class InvalidRequest(Chat4AllError):
    status = 422
    code = "invalid_argument"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class IdempotencyConflict(Chat4AllError):
    status = 422
    code = "idempotency_conflict"


class IdempotencyInFlight(Chat4AllError):
    status = 409
    code = "idempotency_in_flight"


class NotFound(Chat4AllError):
    status = 404
    code = "not_found"


class AuthError(Chat4AllError):
    status = 401
    code = "unauthenticated"


class PermissionDenied(Chat4AllError):
    status = 403
    code = "permission_denied"


class RateLimited(Chat4AllError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailable(Chat4AllError):
    """The database cannot be opened or migrated; the message says which and why."""

    status = 503
    code = "unavailable"


class DeliveryError(Chat4AllError):
    """A failed delivery. ``done``: the provider ids of the parts of the message that did reach
    the provider before it failed (a text, then its files ...); a retry starts after them."""

    def __init__(self, message: str, done: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.done = done


class RetryableDelivery(DeliveryError):
    def __init__(
        self, message: str, retry_after: float | None = None, done: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, done)
        self.retry_after = retry_after


class PermanentDelivery(DeliveryError):
    pass
