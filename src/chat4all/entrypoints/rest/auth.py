"""Who calls: the API key from either header, checked by :class:`Access` (so a missing key is
our 401 with the error body, never FastAPI's own answer), and the services the routes call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from chat4all.domain.access import Principal
from chat4all.entrypoints.services import Services

__all__ = ["Sender", "Reader", "Admin", "Use"]

# Either header carries the API key; both are documented as security schemes.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key")


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _use(request: Request) -> Services:
    """The use cases, as a dependency: ``async``, because FastAPI runs a plain function
    dependency in a worker thread, a thread hop (and GIL hand-off) on every request."""
    return _services(request)


def _allowed(action: str) -> Callable[..., Awaitable[Principal]]:
    async def check(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key)],
    ) -> Principal:
        presented = bearer.credentials if bearer else api_key
        return await _services(request).access.authorize(presented, action)

    return check


Sender = Annotated[Principal, Depends(_allowed("send"))]
Reader = Annotated[Principal, Depends(_allowed("read"))]
Admin = Annotated[Principal, Depends(_allowed("admin"))]
Use = Annotated[Services, Depends(_use)]
"""The use cases (:class:`Services`), for a route's parameters."""
