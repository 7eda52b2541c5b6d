"""The one table from chat4all's errors to what callers see: a REST status with the error
body's ``code``, and a gRPC status code. REST and gRPC both answer from it, and a test fails
when an error class has no row (each class has its own row: a new error is a decision).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import grpc

from chat4all.errors import (
    AccountPaused,
    AuthError,
    ChannelUnavailable,
    Chat4AllError,
    DeliveryError,
    IdempotencyConflict,
    IdempotencyInFlight,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermanentDelivery,
    PermissionDenied,
    RateLimited,
    RetryableDelivery,
    StoreUnavailable,
    UploadConflict,
)

__all__ = ["ErrorAnswer", "ERROR_ANSWERS", "answer_for", "retry_after_of"]


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    status: int
    """The REST status."""
    code: str
    """The REST error body's ``code``."""
    grpc_code: grpc.StatusCode


_INTERNAL: Final = ErrorAnswer(500, "internal", grpc.StatusCode.INTERNAL)

ERROR_ANSWERS: Final[Mapping[type[Chat4AllError], ErrorAnswer]] = {
    Chat4AllError: _INTERNAL,
    InvalidRequest: ErrorAnswer(422, "invalid_argument", grpc.StatusCode.INVALID_ARGUMENT),
    IdempotencyConflict: ErrorAnswer(
        422, "idempotency_conflict", grpc.StatusCode.FAILED_PRECONDITION
    ),
    IdempotencyInFlight: ErrorAnswer(409, "idempotency_in_flight", grpc.StatusCode.ALREADY_EXISTS),
    NotFound: ErrorAnswer(404, "not_found", grpc.StatusCode.NOT_FOUND),
    # tus answers 409 to a chunk at a stale offset; gRPC's ABORTED is its concurrency conflict
    UploadConflict: ErrorAnswer(409, "upload_conflict", grpc.StatusCode.ABORTED),
    AuthError: ErrorAnswer(401, "unauthenticated", grpc.StatusCode.UNAUTHENTICATED),
    PermissionDenied: ErrorAnswer(403, "permission_denied", grpc.StatusCode.PERMISSION_DENIED),
    RateLimited: ErrorAnswer(429, "rate_limited", grpc.StatusCode.RESOURCE_EXHAUSTED),
    StoreUnavailable: ErrorAnswer(503, "unavailable", grpc.StatusCode.UNAVAILABLE),
    Overloaded: ErrorAnswer(503, "overloaded", grpc.StatusCode.UNAVAILABLE),
    ChannelUnavailable: ErrorAnswer(503, "channel_unavailable", grpc.StatusCode.UNAVAILABLE),
    # A connector's failure is the dispatcher's business and never reaches a caller; if one
    # ever did, it is our fault, not the caller's.
    DeliveryError: _INTERNAL,
    RetryableDelivery: _INTERNAL,
    AccountPaused: _INTERNAL,
    PermanentDelivery: _INTERNAL,
}


def answer_for(exc: Chat4AllError) -> ErrorAnswer:
    """The row of ``exc``'s class (its nearest mapped ancestor's for a class not in the table,
    which the table's test refuses)."""
    for cls in type(exc).__mro__:
        answer = ERROR_ANSWERS.get(cls)
        if answer is not None:
            return answer
    return _INTERNAL


def retry_after_of(exc: Chat4AllError) -> int | None:
    """Whole seconds (at least 1) after which the caller may try again, for the errors that
    tell it (REST's ``Retry-After`` header, gRPC's ``retry-after`` trailer); else ``None``."""
    if isinstance(exc, RateLimited | StoreUnavailable | Overloaded | ChannelUnavailable):
        return max(1, math.ceil(exc.retry_after))
    return None
