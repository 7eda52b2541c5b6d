"""chat4all's exceptions. What a caller sees for each (a REST status and a gRPC code) is one
table, :mod:`chat4all.entrypoints.error_codes`.

::

    Chat4AllError              every error a client or operator can see
    ├── InvalidRequest         bad input; ``field`` names where
    ├── IdempotencyConflict    the same Idempotency-Key with a different body
    ├── IdempotencyInFlight    the first request with that key is still running
    ├── NotFound               no such resource for this tenant
    ├── UploadConflict         another request is writing the same upload, or wrote it first
    ├── AuthError              no or unknown API key
    ├── PermissionDenied       the key's role may not do this
    ├── RateLimited            over the key's (or the global) rate; ``retry_after`` seconds
    ├── StoreUnavailable       the database (or the media bucket) cannot answer
    ├── Overloaded             the workers are behind: sends are shed for ``retry_after`` s
    └── DeliveryError          a connector failed to deliver (never reaches a client)
        ├── RetryableDelivery  try again (after ``retry_after`` when the provider says)
        │   └── AccountPaused  the account cannot send until an operator acts (a dead token):
        │                      its messages wait, their attempts not counted
        └── PermanentDelivery  give up: the message fails with this reason
"""

from __future__ import annotations

__all__ = [
    "Chat4AllError",
    "InvalidRequest",
    "IdempotencyConflict",
    "IdempotencyInFlight",
    "NotFound",
    "UploadConflict",
    "AuthError",
    "PermissionDenied",
    "RateLimited",
    "StoreUnavailable",
    "Overloaded",
    "ChannelUnavailable",
    "DeliveryError",
    "RetryableDelivery",
    "PermanentDelivery",
    "AccountPaused",
]


class Chat4AllError(Exception):
    """Every error a client or operator can see."""


class InvalidRequest(Chat4AllError):
    """Bad input; ``field`` names where."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class IdempotencyConflict(Chat4AllError):
    """The same Idempotency-Key with a different body."""

    def __init__(
        self,
        message: str = "this Idempotency-Key was used with a different request body; use a new "
        "key for a new message",
    ) -> None:
        super().__init__(message)


class IdempotencyInFlight(Chat4AllError):
    """The first request with this Idempotency-Key is still running."""


class NotFound(Chat4AllError):
    """No such resource for this tenant."""


class UploadConflict(Chat4AllError):
    """Another request is writing the same resumable upload, or moved its offset first: ask
    where it stands and send from there."""


class AuthError(Chat4AllError):
    """No API key, or an unknown or revoked one."""


class PermissionDenied(Chat4AllError):
    """The key's role may not do this."""


class RateLimited(Chat4AllError):
    """Over the key's (or the global) rate; ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailable(Chat4AllError):
    """The database cannot be opened or migrated, or cannot answer now (unreachable, the
    connection cut, a failover, locked past its busy timeout), or the media bucket cannot
    (missing, refused, unreachable); the message says which. A
    request that meets it may be retried after ``retry_after`` seconds."""

    retry_after: float = 1.0


class Overloaded(Chat4AllError):
    """The hub sheds load: its workers are behind past the bound set (``reason``: which one),
    so no send is accepted now; the caller may retry after ``retry_after`` seconds. Reads and
    every other request keep working."""

    def __init__(self, message: str, reason: str, retry_after: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


class ChannelUnavailable(Chat4AllError):
    """The provider could not do an immediate action (typing, mark-read) now: throttled or
    failing; it may be retried after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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


class AccountPaused(RetryableDelivery):
    """The account cannot send until an operator acts (its provider token expired or was
    revoked): its messages wait without calling the provider and without counting attempts; it
    resumes when its credentials are replaced or an admin resumes it. ``account``: which."""

    def __init__(
        self,
        message: str,
        account: str,
        retry_after: float | None = None,
        done: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, retry_after, done)
        self.account = account
