"""REST API (FastAPI, ``/v1``). Handlers only translate: parse, call one use case, map errors.

Every error body is ``{"error": {"code", "message", "field"}}`` with the status of
:mod:`chat4all.errors` (422 for invalid input, with the field).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Protocol

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry.trace import Tracer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as Message_

from chat4all import __version__
from chat4all.adapters.storage.keys import Principal
from chat4all.adapters.storage.webhooks import Subscription, WebhookStore
from chat4all.domain.model import (
    ATTACHMENT_KINDS,
    Attachment,
    Button,
    Content,
    DeliveryStatus,
    Location,
    Media,
    Message,
    StatusEvent,
    Template,
    message_document,
)
from chat4all.domain.model import Conversation as Thread
from chat4all.entrypoints.uploads import chunks_of, read_upload
from chat4all.errors import Chat4AllError, RateLimited
from chat4all.metrics import HubMetrics
from chat4all.ports import Page, SendRequest, WebhookRequest
from chat4all.service_layer.access import Access
from chat4all.service_layer.events import EventBus
from chat4all.service_layer.inbound import Inbound
from chat4all.service_layer.media import MediaLibrary
from chat4all.service_layer.messages import Messages
from chat4all.telemetry import NO_TRACER, failed, request_id_from, request_scope

__all__ = ["create_app"]


# The channels as the v1 contract lists them (until channels are strings there).
class Channel(StrEnum):
    TELEGRAM = "telegram"
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"


class DeadLetters(Protocol):
    async def dead_letters(
        self, tenant: str, cursor: str | None, limit: int
    ) -> Page[tuple[Message, str]]: ...

    async def replay(self, tenant: str, message_id: str, now: float) -> Message: ...


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttachmentIn(_Strict):
    url: str | None = Field(
        default=None, max_length=2048, pattern="^https?://", description="An http(s) link"
    )
    media_id: str | None = Field(
        default=None, max_length=32, description="An upload's id (POST /v1/media)"
    )
    kind: Literal["image", "video", "audio", "document"] | None = Field(
        default=None, description="Default: document for a url, the upload's kind for a media_id"
    )
    filename: str | None = Field(default=None, max_length=255)
    mime_type: str | None = Field(default=None, max_length=127)
    caption: str | None = Field(default=None, max_length=1024)


class LocationIn(_Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: str | None = None


class ButtonIn(_Strict):
    title: str = Field(min_length=1, max_length=64)
    payload: str | None = Field(default=None, max_length=64)
    url: str | None = Field(default=None, max_length=2048)


class TemplateIn(_Strict):
    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=2, max_length=15)
    parameters: list[str] = []


class ContentIn(_Strict):
    """What is sent; per-channel limits (smaller than the maxima here) are checked on accept."""

    model_config = ConfigDict(
        json_schema_extra={
            "description": "Needs text, an attachment, a location or a template.",
            "anyOf": [
                {"required": ["text"], "properties": {"text": {"type": "string", "minLength": 1}}},
                {"required": ["attachments"], "properties": {"attachments": {"minItems": 1}}},
                {"required": ["location"], "properties": {"location": {"type": "object"}}},
                {"required": ["template"], "properties": {"template": {"type": "object"}}},
            ],
        }
    )

    text: str | None = Field(default=None, max_length=4096)
    attachments: list[AttachmentIn] = Field(default=[], max_length=10)
    location: LocationIn | None = None
    reply_to: str | None = None
    template: TemplateIn | None = None
    buttons: list[ButtonIn] = Field(default=[], max_length=100)
    extensions: dict[str, str] = {}

    def to_domain(self) -> Content:
        return Content(
            text=self.text,
            attachments=tuple(Attachment(**a.model_dump()) for a in self.attachments),
            location=Location(**self.location.model_dump()) if self.location else None,
            reply_to=self.reply_to,
            template=(
                Template(
                    self.template.name, self.template.language, tuple(self.template.parameters)
                )
                if self.template
                else None
            ),
            buttons=tuple(Button(**b.model_dump()) for b in self.buttons),
            extensions=tuple(sorted(self.extensions.items())),
        )


class SubscriptionIn(_Strict):
    url: str = Field(min_length=8, max_length=2048, pattern="^https?://")
    events: list[Literal["message.status", "message.inbound"]] = Field(min_length=1)


class SendIn(_Strict):
    channel: Channel
    account: str = Field(min_length=1, max_length=128, description="Our account on the channel")
    recipient: str = Field(
        min_length=1, max_length=128, pattern=r"\S", description="The chat/user on the channel"
    )
    content: ContentIn


class ContentOut(BaseModel):
    text: str | None
    attachments: list[Attachment]
    location: Location | None
    reply_to: str | None
    template: Template | None
    buttons: list[Button]
    extensions: dict[str, str]


class MessageOut(BaseModel):
    """A message as :func:`chat4all.domain.model.message_document` writes it."""

    id: str
    tenant: str
    conversation_id: str
    seq: int
    direction: Literal["outbound", "inbound"]
    content: ContentOut
    status: DeliveryStatus
    created_at: float
    provider_message_id: str | None
    history: list[StatusEvent]


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None


class Conversation(BaseModel):
    id: str
    tenant: str
    channel: Channel
    account: str
    recipient: str
    last_message_at: float | None = None


class ConversationPage(BaseModel):
    items: list[Conversation]
    next_cursor: str | None


class DeadLetter(BaseModel):
    message: MessageOut
    error: str


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    next_cursor: str | None


class SubscriptionList(BaseModel):
    items: list[Subscription]


class NewSubscription(BaseModel):
    id: str
    tenant: str
    url: str
    events: list[str]
    created_at: float
    secret: str = Field(description="The signing secret, shown in this answer only")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    reason: str | None = None


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = Field(description="Where in the request the problem is, when known")


class ErrorBody(BaseModel):
    error: ErrorDetail


_WHY: Final = {
    401: "No API key, or an unknown or revoked one",
    403: "The key's role may not do this",
    404: "No such resource for this tenant",
    409: "The first request with this Idempotency-Key is still running",
    422: "Invalid input (`field` names where), or an Idempotency-Key reused with another body",
    429: "Over the key's (or the global) rate",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route, all with the one error body."""
    answers: dict[int | str, dict[str, Any]] = {
        s: {"model": ErrorBody, "description": _WHY[s]} for s in statuses
    }
    if 429 in answers:
        answers[429]["headers"] = {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
        }
    return answers


_CURSOR: Final = Query(
    max_length=512,
    pattern="^[A-Za-z0-9_-]*$",
    description="Opaque: the next_cursor of the previous page; other values are refused (422)",
)


def _conversation(conversation: Thread) -> dict[str, Any]:
    return asdict(conversation)


def media_document(media: Media) -> dict[str, Any]:
    """An upload as clients see it (no tenant, no storage details)."""
    return {
        "id": media.id,
        "filename": media.filename,
        "mime_type": media.mime_type,
        "size": media.size,
        "sha256": media.sha256,
        "kind": media.kind,
    }


_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {"type": "string", "format": "binary", "minLength": 1},
                        "kind": {
                            "type": "string",
                            "enum": list(ATTACHMENT_KINDS),
                            "description": "Default: from the file's type (JPEG, PNG, WebP: "
                            "image; MP4: video; MP3, M4A, OGG: audio; else document)",
                        },
                    },
                }
            }
        },
    },
    "responses": {
        "201": {
            "description": "Stored",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "filename": {"type": "string"},
                            "mime_type": {"type": "string"},
                            "size": {"type": "integer"},
                            "sha256": {"type": "string"},
                            "kind": {"type": "string", "enum": list(ATTACHMENT_KINDS)},
                        },
                    }
                }
            },
        }
    },
}


class _Observe:
    """Per request: a server span continuing the caller's ``traceparent``, a request id (the
    caller's ``X-Request-ID`` or a new one, echoed in the answer and bound to the logs), and the
    request metrics. A plain ASGI middleware: Starlette's BaseHTTPMiddleware costs a task and a
    stream copy per request."""

    def __init__(self, app: ASGIApp, metrics: HubMetrics | None, tracer: Tracer) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = request_id_from(headers.get("x-request-id"))
        echoed = (b"x-request-id", request_id.encode())
        method = scope["method"]

        async def capture(message: Message_) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        with request_scope(self.tracer, method, headers, request_id) as span:
            try:
                await self.app(scope, receive, capture)
            finally:
                template = getattr(scope.get("route"), "path", "unmatched")
                span.update_name(f"{method} {template}")
                span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    failed(span, f"HTTP {status}")
                if self.metrics is not None:
                    self.metrics.requests.labels(template, method, str(status)).inc()
                    self.metrics.latency.labels(template, method).observe(
                        time.perf_counter() - began
                    )


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}}, status_code=status
    )


# Either header carries the API key; documented as security schemes, checked by Access (so a
# missing key is our 401 with the error body, never FastAPI's own answer).
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key")


def _allowed(action: str) -> Callable[..., Awaitable[Principal]]:
    async def check(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key)],
    ) -> Principal:
        access: Access = request.app.state.access
        return await access.authorize(bearer.credentials if bearer else api_key, action)

    return check


Sender = Annotated[Principal, Depends(_allowed("send"))]
Reader = Annotated[Principal, Depends(_allowed("read"))]
Admin = Annotated[Principal, Depends(_allowed("admin"))]

# Every role may read, so readers never see a 403.
_READ: Final = (401, 429)
_ADMIN: Final = (401, 403, 429)


def create_app(
    messages: Messages,
    access: Access,
    ready: Callable[[], Awaitable[bool]],
    on_accepted: Callable[[], None] | None = None,
    metrics: HubMetrics | None = None,
    refresh_gauges: Callable[[], Awaitable[None]] | None = None,
    dead_letters: DeadLetters | None = None,
    inbound: Inbound | None = None,
    bus: EventBus | None = None,
    webhooks: WebhookStore | None = None,
    tracer: Tracer = NO_TRACER,
    media: MediaLibrary | None = None,
) -> FastAPI:
    app = FastAPI(title="chat4all", version=__version__, openapi_url="/v1/openapi.json")
    app.state.access = access
    app.add_middleware(_Observe, metrics=metrics, tracer=tracer)

    if metrics is not None:

        @app.get("/metrics", tags=["operations"], include_in_schema=False)
        async def scrape() -> Response:
            if refresh_gauges is not None:
                await refresh_gauges()
            return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if dead_letters is not None:

        @app.get(
            "/v1/dead-letters",
            tags=["dead letters"],
            response_model=DeadLetterPage,
            responses=_errors(*_ADMIN, 422),
        )
        async def list_dead(
            who: Admin,
            cursor: Annotated[str | None, _CURSOR] = None,
            limit: Annotated[int, Query(ge=1, le=200)] = 50,
        ) -> dict[str, Any]:
            """Messages given up on, with the last error; replay them once the cause is fixed."""
            page = await dead_letters.dead_letters(who.tenant, cursor, limit)
            return {
                "items": [{"message": message_document(m), "error": e} for m, e in page.items],
                "next_cursor": page.next_cursor,
            }

        @app.post(
            "/v1/dead-letters/{message_id}/replay",
            status_code=202,
            tags=["dead letters"],
            response_model=MessageOut,
            responses=_errors(*_ADMIN, 404, 422),
        )
        async def replay(message_id: str, who: Admin) -> dict[str, Any]:
            message = await dead_letters.replay(who.tenant, message_id, time.time())
            if on_accepted is not None:
                on_accepted()
            return message_document(message)

    @app.exception_handler(Chat4AllError)
    async def domain_error(_request: Request, exc: Chat4AllError) -> JSONResponse:
        answer = _error(exc.status, exc.code, str(exc), getattr(exc, "field", None))
        if isinstance(exc, RateLimited):
            answer.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return answer

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        """Starlette's own answers (no such route, method not allowed, an unreadable body) in
        the one error body."""
        if exc.status_code == 400:  # FastAPI's "error parsing the body" is bad input too
            return _error(422, "invalid_argument", "body: the body cannot be parsed", "body")
        answer = _error(exc.status_code, f"http_{exc.status_code}", str(exc.detail))
        if exc.status_code == 405:  # every method of the path (Starlette names only one route's)
            allowed = {
                method
                for route in app.router.routes
                if route.matches(request.scope)[0] is not Match.NONE
                for method in getattr(route, "methods", None) or ()
            }
            answer.headers["Allow"] = ", ".join(sorted(allowed))
        return answer

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return _error(422, "invalid_argument", f"{where}: {first['msg']}", where)

    @app.post(
        "/v1/messages",
        status_code=202,
        tags=["messages"],
        response_model=MessageOut,
        responses={
            202: {
                "headers": {
                    "Idempotent-Replayed": {
                        "description": "`true` when this answers an earlier request with the "
                        "same Idempotency-Key",
                        "schema": {"type": "string", "enum": ["true"]},
                    }
                }
            },
            **_errors(401, 403, 409, 422, 429),
        },
    )
    async def send(
        body: SendIn,
        who: Sender,
        idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
    ) -> JSONResponse:
        """Accept a message for delivery; 202 means it is durable."""
        request = SendRequest(
            body.channel.value, body.account, body.recipient, body.content.to_domain()
        )
        accepted = await messages.send(who.tenant, request, idempotency_key)
        if on_accepted is not None and not accepted.replayed:
            on_accepted()
        headers = {"Idempotent-Replayed": "true"} if accepted.replayed else {}
        return JSONResponse(message_document(accepted.message), status_code=202, headers=headers)

    if media is not None:

        @app.post(
            "/v1/media",
            status_code=201,
            tags=["media"],
            openapi_extra=_UPLOAD_BODY,
            responses=_errors(401, 403, 422, 429),
        )
        async def upload(request: Request, who: Sender) -> JSONResponse:
            """Upload a file (multipart/form-data: ``file``, optional ``kind``) to send it by
            the returned id (an attachment's ``media_id``); at most CHAT4ALL_MEDIA_MAX_BYTES."""
            form = await read_upload(
                request,
                file_field="file",
                fields=("kind",),
                max_bytes=media.max_bytes,
                too_big=media.too_big,
            )
            with form.file:
                stored = await media.upload(
                    who.tenant,
                    chunks_of(form.file),
                    form.filename,
                    form.content_type,
                    form.fields.get("kind"),
                )
            return JSONResponse(media_document(stored), status_code=201)

    @app.get(
        "/v1/messages/{message_id}",
        tags=["messages"],
        response_model=MessageOut,
        responses=_errors(*_READ, 404, 422),
    )
    async def get_message(message_id: str, who: Reader) -> dict[str, Any]:
        """A message with its status history."""
        return message_document(await messages.get(who.tenant, message_id))

    @app.get(
        "/v1/conversations",
        tags=["conversations"],
        response_model=ConversationPage,
        responses=_errors(*_READ, 422),
    )
    async def conversations(
        who: Reader,
        cursor: Annotated[str | None, _CURSOR] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        page = await messages.conversations(who.tenant, cursor, limit)
        return {"items": [_conversation(c) for c in page.items], "next_cursor": page.next_cursor}

    @app.get(
        "/v1/conversations/{conversation_id}/messages",
        tags=["conversations"],
        response_model=MessagePage,
        responses=_errors(*_READ, 404, 422),
    )
    async def conversation_messages(
        conversation_id: str,
        who: Reader,
        cursor: Annotated[str | None, _CURSOR] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        """The conversation's messages in send order, a page at a time."""
        page = await messages.history(who.tenant, conversation_id, cursor, limit)
        return {"items": [message_document(m) for m in page.items], "next_cursor": page.next_cursor}

    if inbound is not None:

        @app.post(
            "/v1/channels/telegram/{account}/webhook",
            tags=["channels"],
            response_model=dict[str, bool],
            responses=_errors(401, 404, 422),
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "description": "A Bot API Update (the fields we read; update "
                                "kinds other than message are acknowledged and ignored)",
                                "required": ["update_id"],
                                "properties": {
                                    "update_id": {"type": "integer"},
                                    "message": {
                                        "type": ["object", "null"],
                                        "required": ["message_id", "chat"],
                                        "properties": {
                                            "message_id": {"type": "integer"},
                                            "chat": {
                                                "type": "object",
                                                "required": ["id"],
                                                "properties": {"id": {"type": "integer"}},
                                            },
                                            "text": {"type": ["string", "null"]},
                                        },
                                    },
                                },
                            }
                        }
                    },
                }
            },
        )
        async def telegram_webhook(
            account: str,
            request: Request,
            x_telegram_bot_api_secret_token: Annotated[str | None, Header()] = None,
        ) -> Response:
            """Where Telegram delivers updates (setWebhook with our secret_token)."""
            del x_telegram_bot_api_secret_token  # documented here, checked by the channel
            reply = await inbound.webhook(
                "telegram",
                account,
                WebhookRequest(
                    request.method,
                    dict(request.query_params),
                    {k.lower(): v for k, v in request.headers.items()},
                    await request.body(),
                ),
            )
            return Response(reply.body, reply.status, media_type=reply.content_type)

    if bus is not None:

        @app.get(
            "/v1/events",
            tags=["events"],
            response_class=StreamingResponse,
            responses={
                200: {
                    "description": "Server-sent events until the client disconnects",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **_errors(*_READ),
            },
        )
        async def events(who: Reader, request: Request) -> StreamingResponse:
            """Live events of the tenant as server-sent events (``message.status``,
            ``message.inbound``)."""

            async def stream() -> AsyncIterator[bytes]:
                yield b": connected\n\n"
                async for event in bus.subscribe(who.tenant):
                    if await request.is_disconnected():
                        return
                    payload = json.dumps(event.data, separators=(",", ":"))
                    yield f"id: {event.id}\nevent: {event.type}\ndata: {payload}\n\n".encode()

            return StreamingResponse(
                stream(),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            )

    if webhooks is not None:

        @app.post(
            "/v1/subscriptions",
            status_code=201,
            tags=["webhooks"],
            response_model=NewSubscription,
            responses=_errors(*_ADMIN, 422),
        )
        async def subscribe(body: SubscriptionIn, who: Admin) -> dict[str, Any]:
            """Subscribe a URL to events; the signing secret is in this answer only."""
            sub, secret = await webhooks.subscribe(who.tenant, body.url, tuple(body.events))
            return {**asdict(sub), "secret": secret}

        @app.get(
            "/v1/subscriptions",
            tags=["webhooks"],
            response_model=SubscriptionList,
            responses=_errors(*_ADMIN),
        )
        async def subscriptions(who: Admin) -> dict[str, Any]:
            return {"items": [asdict(s) for s in await webhooks.of(who.tenant)]}

        @app.delete(
            "/v1/subscriptions/{subscription_id}",
            status_code=204,
            tags=["webhooks"],
            response_class=Response,
            responses=_errors(*_ADMIN, 404, 422),
        )
        async def unsubscribe(subscription_id: str, who: Admin) -> Response:
            await webhooks.unsubscribe(who.tenant, subscription_id)
            return Response(status_code=204)

    @app.get("/health", tags=["operations"], response_model=Health)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        tags=["operations"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready (the database)"}},
    )
    async def is_ready() -> JSONResponse:
        try:
            ok = await ready()
        except Exception as exc:
            return JSONResponse({"ready": False, "reason": f"{type(exc).__name__}: {exc}"}, 503)
        return JSONResponse({"ready": ok}, 200 if ok else 503)

    return app
