"""How REST routes answer errors, and how they document them: every error is
``{"error": {"code", "message", "field"}}`` with the status of
:mod:`chat4all.entrypoints.error_codes`."""

from __future__ import annotations

from typing import Any, Final

from fastapi import Query
from fastapi.responses import JSONResponse

from chat4all.entrypoints.error_codes import answer_for, retry_after_of
from chat4all.entrypoints.rest.models import ErrorBody
from chat4all.errors import Chat4AllError

__all__ = [
    "error_response",
    "domain_error_response",
    "documented",
    "CURSOR",
    "LIMIT",
    "READ",
    "ADMIN",
]

_WHY: Final = {
    401: "No API key, or an unknown or revoked one",
    403: "The key's role may not do this",
    404: "No such resource for this tenant",
    409: "The first request with this Idempotency-Key is still running",
    422: "Invalid input (`field` names where), or an Idempotency-Key reused with another body",
    429: "Over the key's (or the global) rate",
    503: "The database cannot answer now (`Retry-After` says when to try again)",
}

# Every role may read, so readers never see a 403.
READ: Final = (401, 429)
ADMIN: Final = (401, 403, 429)

CURSOR: Final = Query(
    max_length=512,
    pattern="^[A-Za-z0-9_-]*$",
    description="Opaque: the next_cursor of the previous page; other values are refused (422)",
)
LIMIT: Final = Query(ge=1, le=200, description="Items per page")


_SHED: Final = (
    "The database cannot answer now, or the hub sheds load (code `overloaded`: its workers "
    "are behind, no send is accepted until they catch up); `Retry-After` says when to try again"
)


def documented(*statuses: int, sheds: bool = False) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route, all with the one error body (and 503: every
    route that takes a key reads the database; ``sheds``: the route is refused while the hub
    sheds load, :class:`~chat4all.errors.Overloaded`)."""
    answers: dict[int | str, dict[str, Any]] = {
        s: {"model": ErrorBody, "description": _WHY[s]} for s in (*statuses, 503)
    }
    if sheds:
        answers[503]["description"] = _SHED
    for status in (429, 503):
        if status in answers:
            answers[status]["headers"] = {
                "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
            }
    return answers


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}}, status_code=status
    )


def domain_error_response(exc: Chat4AllError) -> JSONResponse:
    """The answer to a domain error, from the one table."""
    answer = answer_for(exc)
    response = error_response(answer.status, answer.code, str(exc), getattr(exc, "field", None))
    retry_after = retry_after_of(exc)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response
